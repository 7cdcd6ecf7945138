package main

// registerRoutes is the seam for HTTP handlers beyond the operational
// endpoints: the merchant API and pages mount here, for example
//
//	h, err := merchant.New(merchant.Config{Store: d.Store, ...})
//	mux.Handle("/m/", h.Handle)
//
// /metrics, /healthz and /readyz are mounted before it and take precedence.
func registerRoutes(mux *Mux, d Deps) error {
	return nil
}
