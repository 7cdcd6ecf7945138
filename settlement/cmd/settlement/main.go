// Command settlement is the settlement process: it opens the settlement
// store (PostgreSQL with -db postgres://..., else the embedded SQLite file
// the gateway writes, {data dir}/settlement.db), runs the window scheduler
// (drain, close, clear, settle, reconcile) on a ticker, writes one
// settlement file per settled window for the bank's core, and serves
// /metrics, /healthz and /readyz over fasthttp. Other HTTP handlers (the
// merchant API and pages) are mounted in routes.go.
package main

import (
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/shopspring/decimal"

	"scenepay/settlement/merchant"
	"scenepay/settlement/store"
)

// config is everything main reads from flags and the environment.
type config struct {
	DB          string        // postgres:// URL or SQLite file path
	DataDir     string        // the gateway's data dir, for the default SQLite path
	FilesDir    string        // settlement files; "" means {DataDir}/settlement-files
	Listen      string        // HTTP address
	CutOff      time.Duration // time of day, Asia/Shanghai
	Grace       time.Duration
	Tick        time.Duration
	DefaultRate decimal.Decimal
	Retired     []string
	// JournalGateways are the gateways' operator API base URLs whose
	// journal totals reconcile each settled window; none: skipped.
	JournalGateways []string
	GatewayToken    string // their operator token
}

func env(name, def string) string {
	if v, ok := os.LookupEnv(name); ok {
		return v
	}
	return def
}

func parseFlags(args []string) (config, error) {
	var c config
	fs := flag.NewFlagSet("settlement", flag.ContinueOnError)
	fs.StringVar(&c.DB, "db", env("SCENEPAY_SETTLEMENT_DB", ""), "settlement store: postgres:// URL or SQLite file path (default {data-dir}/settlement.db) [SCENEPAY_SETTLEMENT_DB]")
	fs.StringVar(&c.DataDir, "data-dir", env("SCENEPAY_DATA_DIR", "var/run"), "the gateway's data directory [SCENEPAY_DATA_DIR]")
	fs.StringVar(&c.FilesDir, "files-dir", env("SCENEPAY_SETTLEMENT_FILES_DIR", ""), "where settlement files are written (default {data-dir}/settlement-files) [SCENEPAY_SETTLEMENT_FILES_DIR]")
	fs.StringVar(&c.Listen, "listen", env("SCENEPAY_SETTLEMENT_LISTEN", "127.0.0.1:18090"), "HTTP address for /metrics, /healthz, /readyz and the merchant API [SCENEPAY_SETTLEMENT_LISTEN]")
	cut := fs.String("cutoff", env("SCENEPAY_SETTLEMENT_CUTOFF", "23:00"), "window cut-off, HH:MM Asia/Shanghai (24:00 = midnight) [SCENEPAY_SETTLEMENT_CUTOFF]")
	fs.DurationVar(&c.Grace, "grace", 10*time.Minute, "how far past the cut-off now and every source's watermark must be before a window closes")
	fs.DurationVar(&c.Tick, "tick", 10*time.Second, "scheduler period")
	rate := fs.String("default-rate", "0", "merchant discount rate where none is stored, a decimal fraction")
	retired := fs.String("retired-sources", "", "comma-separated gateway sources ignored for drain (decommissioned)")
	gateways := fs.String("journal-gateways", env("SCENEPAY_JOURNAL_GATEWAYS", ""), "comma-separated operator API base URLs of every gateway (http://host:18080); each settled window is reconciled against their journal totals; empty skips reconciliation against the journal [SCENEPAY_JOURNAL_GATEWAYS]")
	tokenFile := fs.String("gateway-token-file", env("SCENEPAY_GATEWAY_TOKEN_FILE", ""), "file holding the gateways' operator token (or set SCENEPAY_GATEWAY_TOKEN) [SCENEPAY_GATEWAY_TOKEN_FILE]")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	d, err := parseCutOff(*cut)
	if err != nil {
		return c, err
	}
	c.CutOff = d
	if c.DefaultRate, err = store.ParseRate(*rate); err != nil {
		return c, fmt.Errorf("-default-rate: %w", err)
	}
	if *retired != "" {
		c.Retired = strings.Split(*retired, ",")
	}
	for _, g := range strings.Split(*gateways, ",") {
		if g = strings.TrimSpace(g); g != "" {
			c.JournalGateways = append(c.JournalGateways, g)
		}
	}
	if len(c.JournalGateways) > 0 {
		c.GatewayToken = os.Getenv("SCENEPAY_GATEWAY_TOKEN")
		if *tokenFile != "" {
			b, err := os.ReadFile(*tokenFile)
			if err != nil {
				return c, fmt.Errorf("-gateway-token-file: %w", err)
			}
			c.GatewayToken = strings.TrimSpace(string(b))
		}
		// The gateway reads its token file as hex and compares the
		// lower-case form; send the same form, whatever case the file has.
		if _, err := hex.DecodeString(c.GatewayToken); err == nil {
			c.GatewayToken = strings.ToLower(c.GatewayToken)
		}
		if c.GatewayToken == "" {
			return c, errors.New("-journal-gateways needs the gateways' operator token: -gateway-token-file or SCENEPAY_GATEWAY_TOKEN")
		}
	}
	if c.Tick <= 0 || c.Grace < 0 {
		return c, errors.New("-tick must be positive and -grace not negative")
	}
	if c.DB == "" {
		c.DB = filepath.Join(c.DataDir, "settlement.db")
	}
	if c.FilesDir == "" {
		c.FilesDir = filepath.Join(c.DataDir, "settlement-files")
	}
	return c, nil
}

func parseCutOff(s string) (time.Duration, error) {
	var h, m int
	if _, err := fmt.Sscanf(s, "%d:%d", &h, &m); err != nil || len(s) != 5 || h < 0 || m < 0 || m > 59 || h > 24 || (h == 24 && m != 0) || h*60+m == 0 {
		return 0, fmt.Errorf("-cutoff %q: want HH:MM between 00:01 and 24:00", s)
	}
	return time.Duration(h)*time.Hour + time.Duration(m)*time.Minute, nil
}

func openStore(ctx context.Context, db string) (store.Store, error) {
	if strings.HasPrefix(db, "postgres://") || strings.HasPrefix(db, "postgresql://") {
		return store.OpenPostgres(ctx, db)
	}
	if err := os.MkdirAll(filepath.Dir(db), 0o700); err != nil {
		return nil, err
	}
	return store.OpenSQLite(ctx, db)
}

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if len(os.Args) > 1 && os.Args[1] == "keys" {
		// settlement keys issue|revoke|list ...: merchant API keys, beside the store.
		os.Exit(keysMain(os.Args[2:]))
	}
	cfg, err := parseFlags(os.Args[1:])
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		log.Error("settlement: bad configuration", "err", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		log.Error("settlement: listen", "err", err)
		os.Exit(1)
	}
	if err := run(ctx, cfg, ln, time.Now, log); err != nil {
		log.Error("settlement: stopped", "err", err)
		os.Exit(1)
	}
}

// keysMain runs "settlement keys ..." against the store named by
// SCENEPAY_SETTLEMENT_DB or {SCENEPAY_DATA_DIR}/settlement.db.
func keysMain(args []string) int {
	cfg, err := parseFlags(nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "settlement keys:", err)
		return 2
	}
	ctx := context.Background()
	k, err := openKeys(ctx, cfg.DB)
	if err != nil {
		fmt.Fprintln(os.Stderr, "settlement keys:", err)
		return 1
	}
	if err := merchant.RunKeysCommand(ctx, k, args, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "settlement keys:", err)
		return 1
	}
	return 0
}
