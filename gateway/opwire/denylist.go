package opwire

// DenyLag is one bus reader whose reported deny-list version is behind the
// current one.
type DenyLag struct {
	TID      string `json:"tid"`
	Reported uint64 `json:"reported"` // 0: never reported
}

// DenyLagging is the answer of GET /v1/denylist/lagging: the registered bus
// readers behind the current deny-list version.
type DenyLagging struct {
	Version uint64    `json:"version"`
	Count   int       `json:"count"`  // every lagging bus reader
	Listed  int       `json:"listed"` // how many are in Lagging (bounded by the gateway)
	Lagging []DenyLag `json:"lagging"`
}
