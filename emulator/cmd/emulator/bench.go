package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"scenepay/emulator/internal/bench"
)

// runBench is "emulator bench": the end-to-end benchmark of the gateway
// against a bare broker echo on a private Mosquitto (make bench-e2e).
func runBench(args []string) int {
	fs := flag.NewFlagSet("emulator bench", flag.ContinueOnError)
	d := bench.Defaults()
	quick := fs.Bool("quick", false, "smoke run: small fleet, two low rates, small scale probe")
	gwBin := fs.String("gateway-bin", "bin/gateway", "gateway binary to benchmark")
	conf := fs.String("mosquitto-conf", d.ConfPath, "deployed Mosquitto config whose settings the private broker uses")
	acl := fs.String("mosquitto-acl", d.ACLPath, "deployed Mosquitto ACL")
	unit := fs.String("broker-unit", d.BrokerUnit, "deployed systemd drop-in of the broker: the private broker runs at its Nice= (empty = the default priority)")
	nTerm := fs.Int("terminals", 0, "load terminals (0 = mode default: 200, quick 10)")
	startRate := fs.Float64("start-rate", 0, "first offered rate, requests/s (0 = mode default)")
	factor := fs.Float64("rate-factor", 0, "rate multiplier per step (0 = mode default)")
	maxRate := fs.Float64("max-rate", 0, "highest rate tried (0 = mode default)")
	window := fs.Duration("window", 0, "offered-load duration per window (0 = mode default)")
	p99 := fs.Duration("p99", 0, "latency objective: p99 at most (0 = 50ms)")
	scale := fs.Int("scale", -1, "connection-scale target (-1 = mode default, 0 = skip)")
	conns := fs.Int("conns", 0, "MQTT connections of the echo and of the gateway (0 = 4)")
	loadClient := fs.String("load-client", d.LoadClient, "load terminals' MQTT client: raw (buffered, one writer goroutine, a reader per connection) or paho (one paho client per terminal, for comparison)")
	perConn := fs.Int("terms-per-conn", d.TermsPerConn, "raw client: terminals per MQTT connection; above 1 they log in as the gateway user (the ACL lets only that user use several terminals' topics)")
	loadTick := fs.Duration("load-tick", d.LoadTick, "raw client: write-coalescing period (each writer flushes at most once per tick)")
	ackDelay := fs.Duration("load-ack-delay", d.LoadAckDelay, "raw client: longest a PUBACK for a reply waits to leave with the connection's next request")
	pprofAddr := fs.String("pprof-listen", "", "pass -pprof-listen to the gateway (profiling; off by default)")
	gwProcs := fs.Int("gateway-procs", d.GatewayProcs, "the gateway's GOMAXPROCS (0 = the Go runtime's default: every core)")
	cpuProfile := fs.String("cpuprofile", "", "write this process's CPU profile (the load terminals and the echo) to a file")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	o := d
	if *quick {
		o = bench.Quick()
	}
	o.GatewayBin, o.ConfPath, o.ACLPath, o.PprofAddr, o.GatewayProcs = *gwBin, *conf, *acl, *pprofAddr, *gwProcs
	o.BrokerUnit = *unit
	o.LoadClient, o.TermsPerConn, o.LoadTick, o.LoadAckDelay = *loadClient, *perConn, *loadTick, *ackDelay
	setPos := func(dst *int, v int) {
		if v > 0 {
			*dst = v
		}
	}
	setPosF := func(dst *float64, v float64) {
		if v > 0 {
			*dst = v
		}
	}
	setPos(&o.Terminals, *nTerm)
	setPos(&o.Conns, *conns)
	setPosF(&o.StartRate, *startRate)
	setPosF(&o.RateFactor, *factor)
	setPosF(&o.MaxRate, *maxRate)
	if *window > 0 {
		o.Window = *window
	}
	if *p99 > 0 {
		o.Objective.P99 = *p99
	}
	if *scale >= 0 {
		o.Scale = *scale
	}
	o.Out = os.Stdout
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "emulator bench:", err)
			return exitUsage
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, "emulator bench:", err)
			return exitUsage
		}
		defer pprof.StopCPUProfile()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if _, err := bench.Run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "emulator bench:", err)
		return exitFailed
	}
	return exitOK
}
