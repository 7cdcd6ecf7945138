package fleet

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"scenepay/emulator/internal/opclient"
)

// TestWalletCallsUseTheWalletToken: the stall code payment calls carry
// the wallet token when the run has one, else the operator token; the
// operator calls keep the operator token.
func TestWalletCallsUseTheWalletToken(t *testing.T) {
	var mu sync.Mutex
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.Header.Get("Authorization"))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{}`))
	}))
	defer srv.Close()
	ctx := context.Background()
	for _, c := range []struct {
		wallet, want string
	}{{"wal", "Bearer wal"}, {"", "Bearer op"}} {
		r := &runner{o: Options{API: srv.URL, Token: "op", WalletToken: c.wallet}}
		r.op = opclient.New(srv.URL, "op", nil)
		got = nil
		// Only the calls' authorization matters here, not the answers.
		r.wallet().PayStallCode(ctx, "C1", opclient.StallPayment{Account: "ecny:w", Amount: 1, ID: "p"})
		r.wallet().RefundStallPayment(ctx, "C1", "p", 1, "p-r1")
		r.api().Account(ctx, "ecny:w")
		mu.Lock()
		if len(got) != 3 || got[0] != c.want || got[1] != c.want || got[2] != "Bearer op" {
			t.Errorf("wallet token %q: authorizations %q, want %q twice then the operator's", c.wallet, got, c.want)
		}
		mu.Unlock()
	}
}
