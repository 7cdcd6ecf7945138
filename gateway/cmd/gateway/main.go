// Command gateway runs the scenepay payment gateway. Flags and environment
// are read here only; see README.md for the configuration reference.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"scenepay/gateway/internal/broker"
	"scenepay/gateway/internal/engine"
	"scenepay/gateway/internal/handoff"
	"scenepay/gateway/internal/ingress"
	"scenepay/gateway/internal/journal"
	"scenepay/gateway/internal/opapi"
	"scenepay/internal/mqttclient"
	"scenepay/settlement/store"
	"scenepay/terminals"
)

func env(name, def string) string {
	if v, ok := os.LookupEnv(name); ok {
		return v
	}
	return def
}

// envAs reads name with parse, or returns def when it is not set; a value
// that does not parse stops the gateway with a message naming the variable.
func envAs[T any](name string, def T, parse func(string) (T, error), what string) T {
	if v, ok := os.LookupEnv(name); ok {
		x, err := parse(v)
		if err != nil {
			fmt.Fprintf(os.Stderr, "gateway: %s=%q is not %s\n", name, v, what)
			os.Exit(2)
		}
		return x
	}
	return def
}

func envInt(name string, def int) int { return envAs(name, def, strconv.Atoi, "a number") }
func envDur(name string, def time.Duration) time.Duration {
	return envAs(name, def, time.ParseDuration, "a duration")
}
func envBool(name string, def bool) bool { return envAs(name, def, strconv.ParseBool, "true or false") }

// sweepFlags defines the flags of the periodic sweep (engine/sweep.go) on
// fs, with defaults from the environment and then from def.
func sweepFlags(fs *flag.FlagSet, def engine.Config) (every *time.Duration, batch *int) {
	batchDef := def.SweepBatchMax
	if batchDef == 0 {
		batchDef = engine.DefaultSweepBatchMax
	}
	every = fs.Duration("sweep-every", envDur("SCENEPAY_SWEEP_EVERY", def.SweepEvery), "interval of the sweep that charges bus journeys left open past the route's maximum journey time and releases forgotten inpatient deposits; 0 disables it (a card's next tap and a kiosk's next request still expire them) [SCENEPAY_SWEEP_EVERY]")
	batch = fs.Int("sweep-batch-max", envInt("SCENEPAY_SWEEP_BATCH_MAX", batchDef), "journeys, and deposits, one sweep pass expires per shard at most; a larger backlog drains over later passes [SCENEPAY_SWEEP_BATCH_MAX]")
	return every, batch
}

// DefaultGCPercent is the gateway's garbage-collection target (-gc-percent):
// the heap may grow by this percentage of the live heap between two
// collections. With Go's default, 100, the benchmark's gateway (a live
// heap of 80-125 MB, mostly stored idempotency replies) collected every
// 2-6 s under load, each collection marking for 9-26 ms of wall time on
// the processors that answer terminals: at 8,195 requests/s, 400
// lowered the p99 in six of six interleaved pairs (mean 6.8 against 8.0
// ms; README, "Fourth stop"). The cost is memory: up to five times the
// live heap. Set GOMEMLIMIT where memory is bounded (the Kubernetes
// manifest does): the collector then works harder near the limit instead
// of the process being killed.
const DefaultGCPercent = 400

// gcFlag registers -gc-percent; the function it returns applies it,
// unless GOGC is set in the environment (the Go runtime has applied that
// already, and it wins), and returns the percentage in force.
func gcFlag(fs *flag.FlagSet) func() int {
	p := fs.Int("gc-percent", envInt("SCENEPAY_GC_PERCENT", DefaultGCPercent), "garbage-collection target: heap growth between collections, in percent of the live heap (Go's GOGC, which wins when set; -1 turns collection off); fewer collections take less time from answering terminals and cost memory, bounded by GOMEMLIMIT when set [SCENEPAY_GC_PERCENT]")
	return func() int {
		if os.Getenv("GOGC") != "" {
			v := debug.SetGCPercent(100)
			debug.SetGCPercent(v)
			return v
		}
		debug.SetGCPercent(*p)
		return *p
	}
}

// checkSweep refuses sweep settings the engine would silently change.
func checkSweep(every time.Duration, batch int) error {
	if every < 0 {
		return fmt.Errorf("-sweep-every must not be negative (0 disables the sweep)")
	}
	if batch < 1 {
		return fmt.Errorf("-sweep-batch-max must be at least 1")
	}
	return nil
}

// checkPprofListen accepts only a loopback listen address for the
// profiling endpoint: it has no authentication.
func checkPprofListen(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("-pprof-listen %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("-pprof-listen %q: the profiling endpoint has no authentication; use a loopback address such as 127.0.0.1:6060", addr)
	}
	return nil
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "gateway:", err)
		os.Exit(1)
	}
}

func run() error {
	def := engine.DefaultConfig("")
	var (
		dataDir      = flag.String("data-dir", env("SCENEPAY_DATA_DIR", "var/gateway"), "data directory (journal, snapshots, generated keys) [SCENEPAY_DATA_DIR]")
		brokerURL    = flag.String("broker", env("SCENEPAY_BROKER_URL", ""), "external MQTT broker URL, e.g. tcp://127.0.0.1:1883; empty runs the embedded broker [SCENEPAY_BROKER_URL]")
		mqttListen   = flag.String("mqtt-listen", env("SCENEPAY_MQTT_LISTEN", "127.0.0.1:11883"), "embedded broker listen address [SCENEPAY_MQTT_LISTEN]")
		mqttUser     = flag.String("mqtt-user", env("SCENEPAY_MQTT_USER", "scenepay-gateway"), "MQTT username of the gateway [SCENEPAY_MQTT_USER]")
		mqttPassword = flag.String("mqtt-password", env("SCENEPAY_MQTT_PASSWORD", ""), "MQTT password of the gateway (embedded: generated when empty) [SCENEPAY_MQTT_PASSWORD]")
		mqttConns    = flag.Int("mqtt-conns", envInt("SCENEPAY_MQTT_CONNS", 4), "MQTT connections in the shared subscription [SCENEPAY_MQTT_CONNS]")
		mqttAckDelay = flag.Duration("mqtt-ack-delay", envDur("SCENEPAY_MQTT_ACK_DELAY", mqttclient.DefaultAckDelay), "longest the PUBACKs for received requests wait to leave with the next reply (0: one write per read); counted against the broker's in-flight window [SCENEPAY_MQTT_ACK_DELAY]")
		instance     = flag.String("instance", env("SCENEPAY_INSTANCE", "gw1"), "instance name, part of the MQTT client ids [SCENEPAY_INSTANCE]")
		httpListen   = flag.String("http-listen", env("SCENEPAY_HTTP_LISTEN", "127.0.0.1:18080"), "operator API and /metrics listen address [SCENEPAY_HTTP_LISTEN]")
		masterFile   = flag.String("master-key-file", env("SCENEPAY_MASTER_KEY_FILE", ""), "terminal master key file (64 hex chars); default {data-dir}/master.key, created if absent [SCENEPAY_MASTER_KEY_FILE]")
		topicRoot    = flag.String("topic-root", env("SCENEPAY_TOPIC_ROOT", terminals.DefaultTopics.Root), "MQTT topic root [SCENEPAY_TOPIC_ROOT]")
		shards       = flag.Int("shards", envInt("SCENEPAY_SHARDS", def.Shards), "account shards (fixed for the life of the data) [SCENEPAY_SHARDS]")
		queueMax     = flag.Int("shard-queue-max", envInt("SCENEPAY_SHARD_QUEUE_MAX", def.ShardQueueMax), "per-shard queue bound, requests [SCENEPAY_SHARD_QUEUE_MAX]")
		inflightMax  = flag.Int("inflight-max", envInt("SCENEPAY_INFLIGHT_MAX", def.InFlightMax), "admitted unanswered requests bound [SCENEPAY_INFLIGHT_MAX]")
		skewMax      = flag.Duration("skew-max", envDur("SCENEPAY_SKEW_MAX", def.SkewMax), "allowed terminal clock skew [SCENEPAY_SKEW_MAX]")
		window       = flag.Int("replay-window", envInt("SCENEPAY_REPLAY_WINDOW", int(def.Idem.Window)), "per-terminal replay window, txn ids [SCENEPAY_REPLAY_WINDOW]")
		snapEvery    = flag.Int("snapshot-every", envInt("SCENEPAY_SNAPSHOT_EVERY", def.SnapshotEvery), "journal entries between snapshots [SCENEPAY_SNAPSHOT_EVERY]")
		logFormat    = flag.String("log-format", env("SCENEPAY_LOG_FORMAT", "text"), "log format: text or json [SCENEPAY_LOG_FORMAT]")
		logLevel     = flag.String("log-level", env("SCENEPAY_LOG_LEVEL", "info"), "log level: debug, info, warn, error [SCENEPAY_LOG_LEVEL]")
	)
	settleDB := flag.String("settlement-db", env("SCENEPAY_SETTLEMENT_DB", ""), "settlement store: a postgres:// URL, or empty for the embedded SQLite store at {data-dir}/settlement.db [SCENEPAY_SETTLEMENT_DB]")
	handoffOn := flag.Bool("handoff", env("SCENEPAY_HANDOFF", "true") == "true", "hand journaled transactions off to the settlement store [SCENEPAY_HANDOFF]")
	backlogMax := flag.Int("handoff-backlog-max", envInt("SCENEPAY_HANDOFF_BACKLOG_MAX", handoff.DefaultBacklogMax), "journal records not yet handed off, past which /readyz fails and new payments get BUSY [SCENEPAY_HANDOFF_BACKLOG_MAX]")
	batchRows := flag.Int("handoff-batch-rows", envInt("SCENEPAY_HANDOFF_BATCH_ROWS", handoff.DefaultBatchRowsMax), "rows per handoff batch [SCENEPAY_HANDOFF_BATCH_ROWS]")
	batchAge := flag.Duration("handoff-batch-age", envDur("SCENEPAY_HANDOFF_BATCH_AGE", handoff.DefaultBatchAge), "seal a handoff batch this old; idle watermark interval [SCENEPAY_HANDOFF_BATCH_AGE]")
	journalRetain := flag.Duration("journal-retain", envDur("SCENEPAY_JOURNAL_RETAIN", 120*time.Hour), "keep journal segments until their records are this old, so that settlement can reconcile settled windows against GET /v1/journal/totals; 0 keeps only what recovery and the handoff need [SCENEPAY_JOURNAL_RETAIN]")
	commitInterval := flag.Duration("journal-commit-interval", envDur("SCENEPAY_JOURNAL_COMMIT_INTERVAL", time.Millisecond), "least time between the starts of two journal fsyncs: under load more records share one fsync, idle a record still waits for none [SCENEPAY_JOURNAL_COMMIT_INTERVAL]")
	preallocate := flag.Bool("journal-preallocate", envBool("SCENEPAY_JOURNAL_PREALLOCATE", true), "zero-fill the next journal segment in the background, so that group fsyncs flush data, not a growing file [SCENEPAY_JOURNAL_PREALLOCATE]")
	pprofListen := flag.String("pprof-listen", env("SCENEPAY_PPROF_LISTEN", ""), "profiling endpoint (/debug/pprof/) listen address, a loopback one (no authentication); empty = off [SCENEPAY_PPROF_LISTEN]")
	sweepEvery, sweepBatch := sweepFlags(flag.CommandLine, def)
	applyGC := gcFlag(flag.CommandLine)
	tokenFile, walletFile := tokenFlags(flag.CommandLine)
	flag.Parse()
	gcPercent := applyGC()
	if *pprofListen != "" {
		if err := checkPprofListen(*pprofListen); err != nil {
			return err
		}
		// Off by default: profiles expose internals and cost CPU while taken.
		// A mux of its own keeps /debug/pprof off the operator API.
		mux := pprofMux()
		go func() { slog.Error("pprof endpoint stopped", "err", http.ListenAndServe(*pprofListen, mux)) }()
	}

	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("-log-level: %w", err)
	}
	hopts := &slog.HandlerOptions{Level: lvl}
	var log *slog.Logger
	if *logFormat == "json" {
		log = slog.New(slog.NewJSONHandler(os.Stderr, hopts))
	} else {
		log = slog.New(slog.NewTextHandler(os.Stderr, hopts))
	}
	slog.SetDefault(log)

	if err := os.MkdirAll(*dataDir, 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	if *masterFile == "" {
		*masterFile = filepath.Join(*dataDir, "master.key")
	}
	if *tokenFile == "" {
		*tokenFile = filepath.Join(*dataDir, "operator.token")
	}
	master, err := loadOrCreateSecret(*masterFile, 32)
	if err != nil {
		return fmt.Errorf("master key: %w", err)
	}
	token, err := loadToken("SCENEPAY_OPERATOR_TOKEN", *tokenFile)
	if err != nil {
		return fmt.Errorf("operator token: %w", err)
	}
	walletToken, err := loadWalletToken(*walletFile, token)
	if err != nil {
		return err
	}
	if walletToken == "" {
		log.Warn("no wallet token (-wallet-token-file, SCENEPAY_WALLET_TOKEN): the stall code payment routes take the operator token only, so a wallet backend holding it could call every operator route")
	} else {
		log.Info("wallet token loaded: it may call only the stall code payment and refund routes; the operator token keeps every route",
			"wallet_token_file", *walletFile, "wallet_token_from_env", os.Getenv("SCENEPAY_WALLET_TOKEN") != "")
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	topics := terminals.Topics{Root: *topicRoot, Group: terminals.DefaultTopics.Group}

	// Bind the HTTP port first: a taken port must fail before anything starts.
	if err := broker.CheckFree(*httpListen); err != nil {
		return fmt.Errorf("operator API: %s is not free: %w (set -http-listen or SCENEPAY_HTTP_LISTEN)", *httpListen, err)
	}

	var emb *broker.Broker
	url := *brokerURL
	if url == "" {
		if *mqttPassword == "" {
			p := make([]byte, 16)
			if _, err := rand.Read(p); err != nil {
				return err
			}
			*mqttPassword = hex.EncodeToString(p)
		}
		// The embedded broker logs only errors: its connection chatter would
		// drown the gateway's own lines.
		blog := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
		emb, err = broker.Start(broker.Config{Addr: *mqttListen, TopicRoot: topics.Root, GatewayUser: *mqttUser, GatewayPassword: *mqttPassword, Logger: blog})
		if err != nil {
			return err
		}
		defer emb.Close()
		url = emb.URL()
		log.Info("embedded MQTT broker listening", "addr", emb.Addr())
	}

	cfg := engine.DefaultConfig(filepath.Join(*dataDir, "state"))
	cfg.Topics = topics
	cfg.Shards = *shards
	cfg.ShardQueueMax = *queueMax
	cfg.InFlightMax = *inflightMax
	cfg.SkewMax = *skewMax
	cfg.Idem.Window = uint64(*window)
	cfg.SnapshotEvery = *snapEvery
	if *journalRetain < 0 {
		return fmt.Errorf("-journal-retain must not be negative")
	}
	cfg.JournalRetain = *journalRetain
	if err := checkSweep(*sweepEvery, *sweepBatch); err != nil {
		return err
	}
	cfg.SweepEvery, cfg.SweepBatchMax = *sweepEvery, *sweepBatch
	cfg.DenyVersionBase = true // a reset data directory's deny list never reuses versions
	cfg.Logger = log
	cfg.Metrics = engine.NewMetrics(reg)
	cfg.Journal = journal.Options{OnSync: cfg.Metrics.OnJournalSync, CommitInterval: *commitInterval, Preallocate: *preallocate}
	// Retention waits for the handoff: set once it exists; 0 (keep the
	// whole journal) until the store has answered.
	var handed atomic.Pointer[handoff.Handoff]
	if *handoffOn {
		cfg.HandedOff = func() uint64 {
			if h := handed.Load(); h != nil {
				return h.HandedOff()
			}
			return 0
		}
	}
	eng, err := engine.Open(cfg, master)
	if err != nil {
		return err
	}
	defer func() {
		if err := eng.Close(); err != nil {
			log.Error("engine close", "err", err)
		}
	}()

	in, err := ingress.Start(ingress.Config{
		BrokerURL: url, ClientID: "scenepay-" + *instance, Username: *mqttUser, Password: *mqttPassword,
		Conns: *mqttConns, AckDelay: *mqttAckDelay, Topics: topics, Logger: log, Registerer: reg, StatusHandler: eng.HandleStatus,
	}, eng.HandleMessage)
	if err != nil {
		return err
	}
	eng.SetPublisher(in)
	stopHandoff := func() {}
	if *handoffOn {
		h, stop, err := startHandoff(*settleDB, *dataDir, *instance, *backlogMax, *batchRows, *batchAge, eng, reg, log)
		if err != nil {
			in.Close()
			return err
		}
		handed.Store(h)
		stopHandoff = stop
	}
	defer stopHandoff()
	apiReady := func() error {
		if err := in.Connected(); err != nil {
			return err
		}
		if h := handed.Load(); h != nil {
			return h.Ready()
		}
		return nil
	}
	auditLog, closeAudit, err := openAuditLog(filepath.Join(*dataDir, "audit.log"), log)
	if err != nil {
		in.Close()
		return fmt.Errorf("audit log: %w", err)
	}
	defer closeAudit()
	api := opapi.New(opapi.Config{Token: token, WalletToken: walletToken, Gatherer: reg, Logger: log, Audit: auditLog, Ready: apiReady, Source: *instance}, eng)
	if err := api.Listen(*httpListen); err != nil {
		in.Close()
		return err
	}
	log.Info("gateway ready", "broker", url, "http", api.Addr(), "topic_root", topics.Root,
		"master_key_file", *masterFile, "operator_token_file", *tokenFile, "gomaxprocs", runtime.GOMAXPROCS(0), "gc_percent", gcPercent)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	var runErr error
	select {
	case s := <-sig:
		log.Info("stopping", "signal", s.String())
	case <-eng.Failed():
		runErr = errors.New("journal failed; stopped (restart recovers from the journal)")
	}
	// Order: stop taking messages, then let the engine finish and snapshot.
	in.Close()
	_ = api.Close()
	return runErr
}

// pprofMux serves the named profiles (/debug/pprof/heap, goroutine, ...),
// CPU profiles (/debug/pprof/profile) and execution traces
// (/debug/pprof/trace: scheduling delays, GC pauses, blocking), which show
// what a CPU profile cannot: where a request waited.
func pprofMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// startHandoff opens the settlement store (lazily: a database that is down
// at start is retried by the handoff) and runs the handoff until stop.
func startHandoff(dsn, dataDir, instance string, backlogMax, batchRows int, batchAge time.Duration,
	eng *engine.Engine, reg prometheus.Registerer, log *slog.Logger) (*handoff.Handoff, func(), error) {
	open := func(ctx context.Context) (store.Store, error) {
		if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
			return store.OpenPostgres(ctx, dsn)
		}
		if dsn != "" {
			return nil, fmt.Errorf("-settlement-db: want a postgres:// URL or empty, got %q", dsn)
		}
		return store.OpenSQLite(ctx, filepath.Join(dataDir, "settlement.db"))
	}
	if dsn != "" && !strings.HasPrefix(dsn, "postgres://") && !strings.HasPrefix(dsn, "postgresql://") {
		return nil, nil, fmt.Errorf("-settlement-db: want a postgres:// URL or empty")
	}
	if backlogMax <= 0 {
		return nil, nil, fmt.Errorf("-handoff-backlog-max must be positive")
	}
	st := handoff.Lazy(open)
	h, err := handoff.New(handoff.Config{
		Source: instance, Store: st, Journal: eng.Journal(), Entry: engine.EntryRecords, Extras: eng.HandoffExtras(),
		Scene: func(tid string) (string, bool) {
			te, ok := eng.Registry().Get(tid)
			if !ok {
				return "", false
			}
			return te.Terminal().Kind, true
		},
		Busy: eng.SetHandoffBusy, BatchRowsMax: batchRows, BatchAge: batchAge, BacklogMax: uint64(backlogMax),
		Logger: log, Registerer: reg, Hook: crashHook(log),
	})
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		h.Run(ctx)
	}()
	stop := func() {
		cancel()
		wg.Wait()
		if err := st.Close(); err != nil {
			log.Error("settlement store close", "err", err)
		}
	}
	return h, stop, nil
}

// crashHook is a test-only fault point: SCENEPAY_HANDOFF_TEST_CRASH=<step>:<n>
// kills the process with SIGKILL the n-th time the handoff reaches step
// (handoff.StepBeforeIngest, StepDuringIngest, StepAfterIngest), so that
// the crash tests can stop it at an exact point of a batch's life. During
// the ingest the kill comes a few milliseconds into the database call.
func crashHook(log *slog.Logger) func(string) {
	v := os.Getenv("SCENEPAY_HANDOFF_TEST_CRASH")
	if v == "" {
		return nil
	}
	step, ns, _ := strings.Cut(v, ":")
	n, err := strconv.Atoi(ns)
	if err != nil || n < 1 {
		n = 1
	}
	var seen atomic.Int64
	log.Warn("test crash point armed", "step", step, "at", n)
	return func(s string) {
		if s != step || seen.Add(1) != int64(n) {
			return
		}
		if s == handoff.StepDuringIngest {
			time.Sleep(3 * time.Millisecond)
		}
		log.Warn("test crash point reached: SIGKILL", "step", s)
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // never returns: the signal is on its way
	}
}

// loadOrCreateSecret reads a hex secret from path, or creates one of n random
// bytes with mode 0600 when the file does not exist.
func loadOrCreateSecret(path string, n int) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		s, err := hex.DecodeString(strings.TrimSpace(string(b)))
		if err != nil || len(s) < 16 {
			return nil, fmt.Errorf("%s: want at least 32 hex characters", path)
		}
		return s, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	s := make([]byte, n)
	if _, err := rand.Read(s); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(hex.EncodeToString(s)+"\n"), 0o600); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, path); err != nil {
		return nil, err
	}
	return s, nil
}
