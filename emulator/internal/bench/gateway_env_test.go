package bench

import (
	"slices"
	"testing"
)

// The private gateway gets the caller's environment without the caller's
// SCENEPAY_* settings and GOMAXPROCS: its processors are the benchmark's
// -gateway-procs, and the runtime's default when that is 0.
func TestGatewayEnv(t *testing.T) {
	caller := []string{"PATH=/usr/bin", "GOMAXPROCS=2", "SCENEPAY_BROKER_URL=tcp://elsewhere:1883", "HOME=/root"}
	env := gatewayEnv(caller, GatewayConfig{Token: "op", Procs: 1})
	want := []string{"PATH=/usr/bin", "HOME=/root", "GOMAXPROCS=1", "SCENEPAY_OPERATOR_TOKEN=op"}
	if !slices.Equal(env, want) {
		t.Fatalf("env %q, want %q", env, want)
	}
	env = gatewayEnv(caller, GatewayConfig{Token: "op", WalletToken: "w"})
	want = []string{"PATH=/usr/bin", "HOME=/root", "SCENEPAY_OPERATOR_TOKEN=op", "SCENEPAY_WALLET_TOKEN=w"}
	if !slices.Equal(env, want) {
		t.Fatalf("env %q, want %q", env, want)
	}
}
