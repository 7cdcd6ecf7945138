package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"scenepay/emulator/internal/opclient"
	"scenepay/terminals"
)

// Gateway process bounds.
const (
	// gatewayReadyTimeout bounds a start until /readyz answers (journal
	// replay included).
	gatewayReadyTimeout = 60 * time.Second
	// gatewayStopTimeout bounds a clean stop (final snapshot) before SIGKILL.
	gatewayStopTimeout = 30 * time.Second
	// provisionWorkers is the parallelism of operator API calls.
	provisionWorkers = 8
	// AccountOpeningFen is each benchmark account's opening balance: the
	// largest the operator API takes (10,000,000.00 CNY), enough for
	// millions of purchases of purchaseFen.
	AccountOpeningFen = terminals.MaxAmount
)

// GatewayConfig starts the gateway binary against the private broker.
type GatewayConfig struct {
	Bin        string
	DataDir    string
	BrokerURL  string
	User       string
	Password   string
	MasterFile string
	Token      string
	// WalletToken is the wallet backend's token (SCENEPAY_WALLET_TOKEN);
	// "" starts the gateway without one.
	WalletToken string
	Conns       int    // -mqtt-conns; 0 keeps the gateway's default
	PprofAddr   string // -pprof-listen; empty = off
	// Procs, above 0, is the gateway's GOMAXPROCS; 0 leaves the Go
	// runtime's default (every core, or the container's CPU limit).
	Procs     int
	ExtraArgs []string
}

// Gateway is one running gateway process.
type Gateway struct {
	API  string
	cmd  *exec.Cmd
	log  *capBuf
	done chan struct{}
}

// StartGateway starts the binary and waits until /readyz answers (it is
// connected to the broker and subscribed).
func StartGateway(ctx context.Context, c GatewayConfig) (*Gateway, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	g := &Gateway{API: fmt.Sprintf("http://127.0.0.1:%d", port), log: &capBuf{}, done: make(chan struct{})}
	args := []string{"-data-dir", c.DataDir, "-broker", c.BrokerURL, "-mqtt-user", c.User,
		"-mqtt-password", c.Password, "-master-key-file", c.MasterFile,
		"-http-listen", fmt.Sprintf("127.0.0.1:%d", port), "-log-level", "warn"}
	if c.Conns > 0 {
		args = append(args, "-mqtt-conns", fmt.Sprint(c.Conns))
	}
	if c.PprofAddr != "" {
		args = append(args, "-pprof-listen", c.PprofAddr)
	}
	args = append(args, c.ExtraArgs...)
	g.cmd = exec.Command(c.Bin, args...)
	g.cmd.Env = gatewayEnv(os.Environ(), c)
	g.cmd.Stdout, g.cmd.Stderr = g.log, g.log
	if err := g.cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: start gateway: %w", err)
	}
	go func() { g.cmd.Wait(); close(g.done) }()
	rctx, cancel := context.WithTimeout(ctx, gatewayReadyTimeout)
	defer cancel()
	go func() {
		select {
		case <-g.done:
			cancel() // exited: stop waiting at once
		case <-rctx.Done():
		}
	}()
	if err := opclient.New(g.API, "", nil).WaitReady(rctx, 50*time.Millisecond); err != nil {
		g.Stop()
		return nil, fmt.Errorf("bench: gateway not ready: %w\n%s", err, g.log.String())
	}
	return g, nil
}

// Pid is the gateway's process id.
func (g *Gateway) Pid() int { return g.cmd.Process.Pid }

// Log is the start of the gateway's output.
func (g *Gateway) Log() string { return g.log.String() }

// Stop asks the gateway to stop (SIGINT: it stops taking messages, drains
// and snapshots) and kills it if that takes longer than gatewayStopTimeout.
func (g *Gateway) Stop() error {
	if g == nil || g.cmd.Process == nil {
		return nil
	}
	g.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-g.done:
	case <-time.After(gatewayStopTimeout):
		g.cmd.Process.Kill()
		<-g.done
		return errors.New("bench: gateway did not stop in time; killed")
	}
	if st := g.cmd.ProcessState; st != nil && !st.Success() {
		return fmt.Errorf("bench: gateway exited %v:\n%s", st, g.log.String())
	}
	return nil
}

// Provision registers n benchmark terminals (stall kind) and opens each
// one's county card with AccountOpeningFen. It is idempotent.
func Provision(ctx context.Context, api, token string, n int) error {
	op := opclient.New(api, token, nil)
	jobs := make(chan int)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for range provisionWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				_, err := op.RegisterTerminal(ctx, opclient.Terminal{TID: TerminalID(i), Kind: "stall", Merchant: "M-BENCH", KeyVersion: 1})
				if err == nil {
					inst := terminals.Instrument{Kind: terminals.InstCounty, ID: AccountID(i)}
					_, _, err = op.OpenAccount(ctx, opclient.OpenAccount{Inst: inst, Balance: AccountOpeningFen, Ref: "bench-open-" + inst.ID})
				}
				errs[i] = err
			}
		}()
	}
	for i := range n {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("bench: provision: %w", err)
	}
	return nil
}

// gatewayEnv is the private gateway's environment: the caller's, without
// its SCENEPAY_* settings (they are for the caller) and its GOMAXPROCS
// (the gateway's is c.Procs), with the gateway's tokens.
func gatewayEnv(environ []string, c GatewayConfig) []string {
	var env []string
	for _, kv := range environ {
		if !strings.HasPrefix(kv, "SCENEPAY_") && !strings.HasPrefix(kv, "GOMAXPROCS=") {
			env = append(env, kv)
		}
	}
	if c.Procs > 0 {
		env = append(env, fmt.Sprintf("GOMAXPROCS=%d", c.Procs))
	}
	env = append(env, "SCENEPAY_OPERATOR_TOKEN="+c.Token)
	if c.WalletToken != "" {
		env = append(env, "SCENEPAY_WALLET_TOKEN="+c.WalletToken)
	}
	return env
}
