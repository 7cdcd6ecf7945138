// Command emulator drives a fleet of virtual payment terminals against a
// scenepay gateway: it waits for the gateway's /readyz, provisions terminals
// and accounts through the operator API, runs a scenario over MQTT, prints
// one line per outcome, a summary and an end-of-run audit of balances, and
// exits non-zero when the audit or a scenario check fails.
//
// Every flag can also be set by an environment variable SCENEPAY_<FLAG>
// (upper case, '-' as '_', e.g. SCENEPAY_MASTER_KEY_FILE); a flag given on
// the command line wins over the environment.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"scenepay/emulator/internal/fleet"
	"scenepay/emulator/internal/opclient"
	"scenepay/emulator/internal/rig"
	"scenepay/terminals"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailed  = 1 // audit or scenario check failed
	exitUsage   = 2
	exitGateway = 3 // gateway not ready, provisioning or connection failed
)

func main() { os.Exit(run()) }

func run() int {
	if len(os.Args) > 1 && os.Args[1] == "bench" {
		return runBench(os.Args[2:])
	}
	fs := flag.NewFlagSet("emulator", flag.ContinueOnError)
	var (
		broker       = fs.String("broker", "tcp://127.0.0.1:11883", "MQTT broker URL")
		mqttUser     = fs.String("mqtt-username", "", "MQTT username (optional)")
		mqttPass     = fs.String("mqtt-password", "", "MQTT password (optional)")
		api          = fs.String("api", "http://127.0.0.1:18080", "gateway operator API base URL")
		token        = fs.String("token", "", "operator bearer token (else SCENEPAY_OPERATOR_TOKEN, else -token-file)")
		tokenFile    = fs.String("token-file", "", "file holding the operator token (the gateway's {data-dir}/operator.token)")
		walletFile   = fs.String("wallet-token-file", "", "file holding the wallet backend's token (the gateway's -wallet-token-file), used for the stall code payment and refund calls; else SCENEPAY_WALLET_TOKEN, else the operator token (with -gateway-bin: else a fresh one the started gateway is given)")
		masterFile   = fs.String("master-key-file", "", "file holding the gateway master key (hex; the gateway's {data-dir}/master.key)")
		topicRoot    = fs.String("topic-root", terminals.DefaultTopics.Root, "MQTT topic root")
		seed         = fs.Uint64("seed", 1, "population and scenario seed")
		nTerm        = fs.Int("terminals", 3, "number of terminals (bus, stall, kiosk in turn)")
		nAcct        = fs.Int("accounts", 0, "number of accounts (0 = 4 per terminal)")
		rate         = fs.Float64("rate", 2, "load purchases per second across the fleet (0 = scripted demo only)")
		duration     = fs.Duration("duration", 0, "load duration (0 = until Ctrl-C)")
		scenario     = fs.String("scenario", "demo", "scenario to run: "+fleet.ScenarioNames())
		timeScale    = fs.Float64("time-scale", 60, "scenario seconds per wall second (scenarios other than demo)")
		faultList    = fs.String("faults", "", "faults to inject, comma separated: "+fleet.FaultNames)
		faultRate    = fs.Float64("fault-rate", 0.05, "probability that a piece of terminal work gets one of the enabled faults")
		gatewayBin   = fs.String("gateway-bin", "", "start this gateway binary (and, without -broker-external, a private Mosquitto) instead of using a running gateway; needed by the gateway-kill and broker-restart faults")
		dataDir      = fs.String("data-dir", "var/emulator-gateway", "with -gateway-bin: the gateway's data directory")
		brokerExt    = fs.Bool("broker-external", false, "with -gateway-bin: use -broker instead of starting a private Mosquitto")
		settleDB     = fs.String("settlement-db", "", "settlement store to audit (SQLite path or postgres:// URL); with -gateway-bin a postgres:// URL is also the started gateway's -settlement-db, and the default is {data-dir}/settlement.db")
		progressOn   = fs.Bool("progress", true, "print a live progress line on stderr for scenarios other than demo (rewritten in place on a terminal)")
		readyTimeout = fs.Duration("ready-timeout", 30*time.Second, "how long to wait for the gateway's /readyz")
		replyTimeout = fs.Duration("reply-timeout", 3*time.Second, "per-attempt reply timeout of a terminal")
		retries      = fs.Int("retries", 2, "resends of identical bytes after a reply timeout")
		keyVersion   = fs.Uint("key-version", 1, "terminal key version")
		debtPayee    = fs.String("debt-payee", fleet.DefaultDebtPayee, "the gateway's transit debt payee merchant (transit config debt_payee_merchant), whom the settlement audit expects repaid debt paid to")
	)
	if err := envDefaults(fs); err != nil {
		fmt.Fprintln(os.Stderr, "emulator:", err)
		return exitUsage
	}
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if *masterFile == "" && *gatewayBin == "" {
		fmt.Fprintln(os.Stderr, "emulator: -master-key-file (or SCENEPAY_MASTER_KEY_FILE) is required: the gateway's master key in hex (make run: var/run/master.key)")
		return exitUsage
	}
	if *keyVersion == 0 || *keyVersion > 1<<32-1 {
		fmt.Fprintln(os.Stderr, "emulator: -key-version must be 1..4294967295")
		return exitUsage
	}

	faults, err := fleet.ParseFaults(*faultList, *faultRate)
	if err != nil {
		fmt.Fprintln(os.Stderr, "emulator:", err)
		return exitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var rg *rig.Rig
	rigWallet := "" // the wallet token a started gateway is given
	if *gatewayBin != "" {
		ext := ""
		if *brokerExt {
			ext = *broker
		}
		tokBytes := make([]byte, 16)
		rand.Read(tokBytes)
		*token = hex.EncodeToString(tokBytes)
		if wt, err := walletToken(*walletFile); err != nil {
			fmt.Fprintln(os.Stderr, "emulator:", err)
			return exitUsage
		} else if wt == "" {
			rand.Read(tokBytes)
			rigWallet = hex.EncodeToString(tokBytes)
		} else {
			rigWallet = wt
		}
		// A postgres:// -settlement-db goes to the gateway too, so that its
		// handoff writes the store the audit reads.
		gwSettle := ""
		if strings.HasPrefix(*settleDB, "postgres://") || strings.HasPrefix(*settleDB, "postgresql://") {
			gwSettle = *settleDB
		}
		rg, err = rig.Start(ctx, rig.Config{GatewayBin: *gatewayBin, DataDir: *dataDir, BrokerURL: ext,
			TopicRoot: *topicRoot, Token: *token, WalletToken: rigWallet, SettlementDB: gwSettle})
		if err != nil {
			fmt.Fprintln(os.Stderr, "emulator:", err)
			return exitGateway
		}
		defer rg.Close()
		*broker, *api, *masterFile = rg.BrokerURL(), rg.API(), rg.MasterKeyFile()
		if *settleDB == "" {
			*settleDB = rg.SettlementDB()
		}
		fmt.Printf("emulator: started %s (data %s) on broker %s, API %s\n", *gatewayBin, *dataDir, *broker, *api)
	}

	op := opclient.New(*api, "", nil) // /readyz needs no token
	var progressW io.Writer
	if *progressOn && *scenario != "demo" { // the demo prints a line per outcome instead
		progressW = os.Stderr
	}
	fmt.Printf("emulator: waiting up to %s for the gateway at %s/readyz\n", *readyTimeout, *api)
	rctx, cancel := context.WithTimeout(ctx, *readyTimeout)
	err = op.WaitReady(rctx, 200*time.Millisecond)
	cancel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "emulator: the gateway did not become ready within %s: %v\n"+
			"  is it running, and is -api (SCENEPAY_API) right?\n", *readyTimeout, err)
		return exitGateway
	}
	// Read after /readyz: the embedded gateway creates the key on first start.
	master, err := readMasterKey(*masterFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, "emulator:", err)
		return exitUsage
	}
	tok, err := operatorToken(*token, *tokenFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, "emulator:", err)
		return exitUsage
	}
	wallet := rigWallet
	if wallet == "" {
		if wallet, err = walletToken(*walletFile); err != nil {
			fmt.Fprintln(os.Stderr, "emulator:", err)
			return exitUsage
		}
	}

	now := time.Now()
	rep, err := fleet.Run(ctx, fleet.Options{
		Broker: *broker, Username: *mqttUser, Password: *mqttPass,
		API: *api, Token: tok, WalletToken: wallet, Master: master, KeyVersion: uint32(*keyVersion),
		Topics: terminals.Topics{Root: *topicRoot, Group: terminals.DefaultTopics.Group},
		Seed:   *seed, Terminals: *nTerm, Accounts: *nAcct, Rate: *rate, Duration: *duration,
		Scenario: *scenario, TimeScale: *timeScale, Faults: faults, SettlementDB: *settleDB, DebtPayee: *debtPayee,
		Progress: progressW, ProgressTTY: isTerminal(os.Stderr),
		// Txn ids start above anything an earlier run against the same
		// gateway used (1000 ids per millisecond of wall clock), so a gateway
		// that kept its replay windows sees fresh ids, not duplicates.
		TxnBase:      uint64(now.UnixMilli()) * 1000,
		RunID:        uint64(now.UnixNano()),
		ReplyTimeout: *replyTimeout, Retries: *retries,
		Out: os.Stdout,
		Rig: rigOrNil(rg),
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "emulator:", err)
		if errors.Is(err, fleet.ErrUnknownScenario) {
			return exitUsage
		}
		return exitGateway
	}
	if !rep.OK() {
		return exitFailed
	}
	return exitOK
}

// rigOrNil keeps a nil *rig.Rig from becoming a non-nil fleet.Rig.
func rigOrNil(r *rig.Rig) fleet.Rig {
	if r == nil {
		return nil
	}
	return r
}

// isTerminal reports whether f is a character device (a TTY), where the
// progress line is rewritten in place.
func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// envDefaults sets each flag from SCENEPAY_<NAME> when that is set, before
// the command line is parsed, so that the command line still wins.
func envDefaults(fs *flag.FlagSet) error {
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		name := "SCENEPAY_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(name); ok && err == nil {
			if e := f.Value.Set(v); e != nil {
				err = fmt.Errorf("%s=%q: %w", name, v, e)
			}
		}
	})
	return err
}

// operatorToken picks the token: the flag (or SCENEPAY_TOKEN), else the
// gateway's own SCENEPAY_OPERATOR_TOKEN, else the token file the gateway
// writes on first start (read as trimmed text: the gateway uses it as is).
func operatorToken(flagValue, file string) (string, error) {
	if flagValue != "" {
		return flagValue, nil
	}
	if v := os.Getenv("SCENEPAY_OPERATOR_TOKEN"); v != "" {
		return v, nil
	}
	if file == "" {
		return "", errors.New("no operator token: set -token, SCENEPAY_OPERATOR_TOKEN or -token-file")
	}
	return readTokenFile("operator", file)
}

// walletToken picks the wallet backend's token: the file, else
// SCENEPAY_WALLET_TOKEN, else "" (the stall code calls then use the
// operator token).
func walletToken(file string) (string, error) {
	if file != "" {
		return readTokenFile("wallet", file)
	}
	return os.Getenv("SCENEPAY_WALLET_TOKEN"), nil
}

// readTokenFile reads a token file as trimmed text (the gateway uses it
// as is).
func readTokenFile(what, file string) (string, error) {
	f, err := os.Open(file)
	if err != nil {
		return "", fmt.Errorf("%s token: %w", what, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, masterKeyFileMax+1))
	if err != nil {
		return "", fmt.Errorf("%s token: %w", what, err)
	}
	t := strings.TrimSpace(string(b))
	if len(b) > masterKeyFileMax || t == "" {
		return "", fmt.Errorf("%s token file %s: want one line of at most %d bytes", what, file, masterKeyFileMax)
	}
	return t, nil
}

// masterKeyFileMax bounds what is read from the key file (64 hex chars and
// some whitespace).
const masterKeyFileMax = 256

// masterKeyMinBytes is the shortest master key the gateway accepts.
const masterKeyMinBytes = 16

func readMasterKey(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("master key: %w", err)
	}
	defer f.Close()
	buf, err := io.ReadAll(io.LimitReader(f, masterKeyFileMax+1))
	if err != nil {
		return nil, fmt.Errorf("master key: %w", err)
	}
	if len(buf) > masterKeyFileMax {
		return nil, fmt.Errorf("master key file %s: larger than %d bytes", path, masterKeyFileMax)
	}
	// The gateway accepts an existing key of 16 bytes or more; so do we,
	// or the two would disagree about a key file the operator supplied.
	key, err := hex.DecodeString(strings.TrimSpace(string(buf)))
	if err != nil || len(key) < masterKeyMinBytes {
		return nil, fmt.Errorf("master key file %s: want at least %d bytes as hex (%d for a new key)", path, masterKeyMinBytes, terminals.KeyLen)
	}
	return key, nil
}
