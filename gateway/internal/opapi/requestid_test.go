package opapi

import (
	"crypto/rand"
	"encoding/hex"
	"testing"

	"github.com/valyala/fasthttp"

	"scenepay/terminals"
)

// Generated request ids never look like a card number, though random hex
// does now and then (every log line of a request carries its id).
func TestRequestIDNeverLooksLikePAN(t *testing.T) {
	const n = 100000
	raw := 0 // how often plain random hex would have
	for range n {
		if id := newRequestID(); terminals.LooksLikePAN(id) || len(id) != 16 {
			t.Fatalf("request id %q", id)
		}
		var b [8]byte
		_, _ = rand.Read(b[:])
		if terminals.LooksLikePAN(hex.EncodeToString(b[:])) {
			raw++
		}
	}
	t.Logf("%d of %d plain random ids looked like a card number", raw, n)
}

// A caller's X-Request-Id that could be a card number is replaced, not
// logged; an ordinary one is kept.
func TestCallerRequestIDThatLooksLikePANIsReplaced(t *testing.T) {
	const pan = "4111111111111111" // a Luhn-valid test card number
	for _, tc := range []struct {
		in   string
		keep bool
	}{{pan, false}, {"req-" + pan, false}, {"req-42", true}} {
		var ctx fasthttp.RequestCtx
		ctx.Request.Header.Set(requestIDHeader, tc.in)
		new(Server).begin(&ctx)
		got := string(ctx.Response.Header.Peek(requestIDHeader))
		if (got == tc.in) != tc.keep || terminals.LooksLikePAN(got) || requestID(&ctx) != got {
			t.Fatalf("X-Request-Id %q: assigned %q", tc.in, got)
		}
	}
}
