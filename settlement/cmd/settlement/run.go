package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"

	"scenepay/settlement/clearing"
	"scenepay/settlement/store"
)

// filesBackfillDays is how many past windows the file writer checks on
// each tick for a missing settlement file (a crash between settling and
// writing leaves one missing; the next tick writes it).
const filesBackfillDays = 7

// Mux routes by path prefix: the fixed operational endpoints plus
// whatever routes.go mounts. Prefixes are matched in registration order.
type Mux struct {
	routes []route
}

type route struct {
	prefix string
	h      fasthttp.RequestHandler
}

// Handle mounts h for every path that starts with prefix.
func (m *Mux) Handle(prefix string, h fasthttp.RequestHandler) {
	m.routes = append(m.routes, route{prefix, h})
}

func (m *Mux) serve(ctx *fasthttp.RequestCtx) {
	p := string(ctx.Path())
	for _, r := range m.routes {
		if len(p) >= len(r.prefix) && p[:len(r.prefix)] == r.prefix {
			r.h(ctx)
			return
		}
	}
	ctx.Error("not found", fasthttp.StatusNotFound)
}

// Deps is what a mounted handler may use.
type Deps struct {
	Store      store.Store
	Clearer    *clearing.Clearer
	Registerer prometheus.Registerer
	Clock      func() time.Time
	Logger     *slog.Logger
	DB         string // the store's URL or path, for packages that keep their own tables beside it
}

// run serves on ln and drives the scheduler with clock until ctx ends.
func run(ctx context.Context, cfg config, ln net.Listener, clock func() time.Time, log *slog.Logger) error {
	st, err := openStore(ctx, cfg.DB)
	if err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	defer st.Close()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	files := prometheus.NewCounter(prometheus.CounterOpts{Name: "scenepay_settlement_files_written_total",
		Help: "Settlement files written for the bank's core."})
	reg.MustRegister(files)
	cl, err := clearing.New(clearing.Config{Store: st, Calendar: clearing.Calendar{CutOff: cfg.CutOff}, Grace: cfg.Grace,
		Retired: cfg.Retired, DefaultRate: cfg.DefaultRate, Legs: st, Registerer: reg})
	if err != nil {
		return err
	}
	rec, err := newReconciler(cfg, cl, reg, log)
	if err != nil {
		return err
	}
	var ready atomic.Bool
	mux := &Mux{}
	mux.Handle("/healthz", func(c *fasthttp.RequestCtx) { c.SetBodyString("ok\n") })
	mux.Handle("/readyz", func(c *fasthttp.RequestCtx) {
		if !ready.Load() {
			c.Error("not ready: no successful scheduler pass yet\n", fasthttp.StatusServiceUnavailable)
			return
		}
		c.SetBodyString("ready\n")
	})
	mux.Handle("/metrics", fasthttpadaptor.NewFastHTTPHandler(promhttp.HandlerFor(reg, promhttp.HandlerOpts{})))
	if err := registerRoutes(mux, Deps{Store: st, Clearer: cl, Registerer: reg, Clock: clock, Logger: log, DB: cfg.DB}); err != nil {
		return err
	}
	srv := &fasthttp.Server{Handler: mux.serve, Name: "scenepay-settlement", ReadTimeout: 10 * time.Second,
		WriteTimeout: 30 * time.Second, MaxRequestBodySize: 64 << 10, Concurrency: 1024}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info("settlement: serving", "addr", ln.Addr().String(), "db", redact(cfg.DB), "cutoff", cfg.CutOff, "grace", cfg.Grace)

	pass := func() {
		now := clock()
		res, err := cl.Tick(ctx, now)
		if err != nil {
			log.Error("settlement: scheduler pass", "err", err)
			ready.Store(false)
			return
		}
		for _, id := range res.Closed {
			log.Info("settlement: window closed", "window", id)
		}
		for _, id := range res.Settled {
			log.Info("settlement: window settled", "window", id)
		}
		if rec != nil {
			reconcilePass(ctx, rec, now, log)
		}
		n, err := writeFiles(ctx, st, cl.Calendar(), now, cfg.FilesDir)
		files.Add(float64(n))
		if err != nil {
			log.Error("settlement: settlement file", "err", err)
			ready.Store(false)
			return
		}
		ready.Store(true)
	}
	pass()
	t := time.NewTicker(cfg.Tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			return srv.ShutdownWithContext(shut)
		case err := <-errc:
			return err
		case <-t.C:
			pass()
		}
	}
}

// newReconciler builds the reconciliation of settled windows against the
// gateways' journals, or returns nil (logged, and
// scenepay_settlement_reconciliation_journal_gateways 0) when no gateway
// is configured.
func newReconciler(cfg config, cl *clearing.Clearer, reg prometheus.Registerer, log *slog.Logger) (*clearing.Reconciler, error) {
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "scenepay_settlement_reconciliation_journal_gateways",
		Help: "Gateways whose journal totals reconcile each settled window; 0: reconciliation against the journal is skipped."})
	if err := reg.Register(g); err != nil {
		return nil, err
	}
	g.Set(float64(len(cfg.JournalGateways)))
	if len(cfg.JournalGateways) == 0 {
		log.Warn("settlement: reconciliation against the journal is SKIPPED: no -journal-gateways configured; settled windows are compared with the store only")
		return nil, nil
	}
	j, err := clearing.NewHTTPJournal(clearing.HTTPJournalConfig{Gateways: cfg.JournalGateways, Token: cfg.GatewayToken})
	if err != nil {
		return nil, err
	}
	log.Info("settlement: settled windows are reconciled against the gateways' journals", "gateways", strings.Join(j.Gateways(), ","))
	return clearing.NewReconciler(cl, j, reg)
}

// reconcilePass reconciles the settled windows that are due and logs what
// it found; a failure leaves the window due for the next pass.
func reconcilePass(ctx context.Context, rec *clearing.Reconciler, now time.Time, log *slog.Logger) {
	res, err := rec.Pass(ctx, now)
	if err != nil {
		log.Error("settlement: reconciliation pass", "err", err)
		return
	}
	for i, r := range res.Reconciled {
		l := log.Info
		if len(r.Differences) > 0 {
			l = log.Error
		}
		l("settlement: window reconciled against the journal", "window", res.Windows[i], "merchants", r.Merchants,
			"differences", len(r.Differences), "new_differences", r.New, "difference_fen", r.DiffFen)
	}
	for _, f := range res.Failed {
		if f.Reason == clearing.ReconcileNotCovered {
			log.Error("settlement: window NOT reconciled: a gateway's journal no longer covers it (given up)", "window", f.Window, "err", f.Err)
			continue
		}
		log.Warn("settlement: window not reconciled yet; retried next pass", "window", f.Window, "err", f.Err)
	}
}

// redact hides a password in a database URL for the log.
func redact(db string) string {
	if u, err := parseURL(db); err == nil && u != "" {
		return u
	}
	return db
}

// writeFiles writes settlement-{window}.csv for each settled window of
// the last filesBackfillDays that has none yet. The file is written to a
// temporary name, synced and renamed, so a reader never sees half a file.
func writeFiles(ctx context.Context, st store.Store, cal clearing.Calendar, now time.Time, dir string) (int, error) {
	from := cal.Of(now.AddDate(0, 0, -filesBackfillDays))
	ws, err := st.Windows(ctx, from.ID, "")
	if err != nil {
		return 0, err
	}
	written := 0
	for _, w := range ws {
		if w.State != store.WindowSettled {
			continue
		}
		path := filepath.Join(dir, "settlement-"+w.ID+".csv")
		if _, err := os.Stat(path); err == nil {
			continue
		}
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return written, err
		}
		ss, err := st.Settlements(ctx, w.ID)
		if err != nil {
			return written, err
		}
		ms, err := st.Merchants(ctx)
		if err != nil {
			return written, err
		}
		by := make(map[string]store.Merchant, len(ms))
		for _, m := range ms {
			by[m.ID] = m
		}
		tmp := path + ".tmp"
		f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o640)
		if err != nil {
			return written, err
		}
		err = clearing.WriteFile(f, w, ss, by)
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Rename(tmp, path)
		}
		if err != nil {
			os.Remove(tmp)
			return written, err
		}
		written++
	}
	return written, nil
}
