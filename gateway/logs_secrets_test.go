package gateway_test

import (
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"scenepay/gateway/internal/testkit"
	"scenepay/terminals"
)

// panTest is a Luhn-valid test card number (a PAN by every rule the gateway
// applies); it is sent in every place a careless terminal or operator could
// put it, and must never come back out in a log line.
const panTest = "4111111111111111"

// logFindings returns every log line that holds a card-number-like digit run
// (13..19 digits passing Luhn, terminals.LooksLikePAN) or any of secrets.
func logFindings(logs string, secrets []string) []string {
	var out []string
	for _, line := range strings.Split(logs, "\n") {
		if terminals.LooksLikePAN(line) {
			out = append(out, "PAN-like: "+line)
			continue
		}
		for _, s := range secrets {
			if s != "" && strings.Contains(strings.ToLower(line), strings.ToLower(s)) {
				out = append(out, "secret: "+line)
				break
			}
		}
	}
	return out
}

// driveTraffic runs an operator and terminal session with bank-card tokens,
// card numbers where they do not belong, tampered and unregistered messages,
// registration, rotation and blocking. It returns the tids it registered.
func driveTraffic(t *testing.T, g *opsGateway) []string {
	t.Helper()
	g.mustCall(t, "POST", "/v1/accounts", `{"inst":{"k":"bank","id":"tok_9f8e7d6c5b4a","last4":"1111"},"balance":50000}`, 201)
	g.mustCall(t, "POST", "/v1/accounts", `{"inst":{"k":"county","id":"L1"},"balance":50000}`, 201)
	g.mustCall(t, "POST", "/v1/accounts", `{"inst":{"k":"ecny","id":"W-L4"},"class":4,"balance":50000}`, 201)
	// An operator who pastes a card number is refused, and the number is not logged.
	if st, _ := g.call(t, "POST", "/v1/accounts", `{"inst":{"k":"bank","id":"`+panTest+`"},"balance":1}`); st != 400 {
		t.Fatalf("account with a PAN id: status %d", st)
	}
	if st, _ := g.call(t, "POST", "/v1/accounts/bank:tok_9f8e7d6c5b4a/topup", `{"amt":100,"ref":"`+panTest+`"}`); st != 400 {
		t.Fatalf("top-up with a PAN ref: status %d", st)
	}
	if st, _ := g.call(t, "POST", "/v1/accounts", `{"inst":{"k":"county","id":"L2"},"ref":"4111-1111-1111-1111"}`); st != 400 {
		t.Fatalf("open with a PAN ref: status %d", st)
	}
	g.mustCall(t, "POST", "/v1/accounts/county:L1/topup", `{"amt":100,"ref":"ref-1"}`, 200)
	g.mustCall(t, "POST", "/v1/accounts/county:L1/block", `{"blocked":false}`, 200)

	tids := []string{"LOG-1", "LOG-2"}
	for _, tid := range tids {
		g.mustCall(t, "POST", "/v1/terminals", `{"tid":"`+tid+`","kind":"bus","merchant":"M-BUS"}`, 201)
	}
	tm := testkit.Connect(t, testkit.MQTTURL(), g.topics, "LOG-1", terminals.DeriveKey(g.master, "LOG-1", 1))
	bank := terminals.Instrument{Kind: terminals.InstBank, ID: "tok_9f8e7d6c5b4a", Last4: "1111"}
	_, rep := tm.Do(t, g.request(tm, purchase(1, 250, bank)))
	wantCode(t, rep, terminals.CodeApproved)
	_, rep = tm.Do(t, g.request(tm, purchase(2, 100, county("L1"))))
	wantCode(t, rep, terminals.CodeApproved)
	_, rep = tm.Do(t, g.request(tm, purchase(3, 60_000, terminals.Instrument{Kind: terminals.InstECNY, ID: "W-L4"})))
	wantCode(t, rep, terminals.CodeLimitSingle)
	_, rep = tm.Do(t, g.request(tm, terminals.Request{Type: terminals.TypeHeartbeat}))
	wantCode(t, rep, terminals.CodeApproved)
	_, rep = tm.Do(t, g.request(tm, terminals.Request{Type: terminals.TypeBalance, Txn: 4, Inst: bank}))
	wantCode(t, rep, terminals.CodeApproved)
	_, rep = tm.Do(t, g.request(tm, terminals.Request{Type: terminals.TypeReversal, Txn: 5, Orig: 2, Amt: 100, Inst: county("L1")}))
	wantCode(t, rep, terminals.CodeApproved)

	// A card number as the instrument id, signed: refused, never stored or logged.
	_, rep = tm.Do(t, g.request(tm, purchase(6, 100, terminals.Instrument{Kind: terminals.InstBank, ID: panTest})))
	if rep.Code == terminals.CodeApproved {
		t.Fatal("a PAN instrument id was approved")
	}
	// Tampered: a PAN in a body whose MAC does not verify.
	bad := g.request(tm, purchase(7, 100, terminals.Instrument{Kind: terminals.InstBank, ID: panTest}))
	bad[12] ^= 0x01
	_, rep = tm.Do(t, bad)
	wantCode(t, rep, terminals.CodeBadMAC)
	_, rep = tm.Do(t, []byte(`{"pan":"`+panTest+`"}`+"\n"+strings.Repeat("0", 64)))
	wantCode(t, rep, terminals.CodeBadMAC)
	_, rep = tm.Do(t, tm.Seal([]byte(`{"v":1,"type":"purchase","tid":"LOG-1","pan":"`+panTest+`"}`)))
	wantCode(t, rep, terminals.CodeMalformed)
	// An unregistered terminal sends a card number: not answered, not logged.
	tm.Client.Publish(g.topics.Request("GHOST-1"), 1, false, []byte(panTest)).WaitTimeout(5 * time.Second)
	// Rotation with overlap, then both keys; block and unblock.
	g.mustCall(t, "POST", "/v1/terminals/LOG-1/rotate", `{"overlap":"5m"}`, 200)
	_, rep = tm.Do(t, g.request(tm, purchase(8, 10, county("L1"))))
	wantCode(t, rep, terminals.CodeApproved)
	g.mustCall(t, "POST", "/v1/terminals/LOG-2/block", `{"blocked":true}`, 200)
	g.mustCall(t, "POST", "/v1/terminals/LOG-2/block", `{"blocked":false}`, 200)
	g.mustCall(t, "GET", "/v1/terminals/LOG-1", "", 200)
	return tids
}

// TestLogsHoldNoCardNumbersOrKeys runs an end-to-end session through the
// machine's Mosquitto with every log line captured, then requires that no
// line holds a card number, the master key, any terminal key or the
// operator token.
func TestLogsHoldNoCardNumbersOrKeys(t *testing.T) {
	g := startOps(t)
	tids := driveTraffic(t, g)
	g.stop() // shutdown lines (snapshot, disconnect) are part of the log too

	secrets := []string{g.token, hex.EncodeToString(g.master), string(g.master)}
	for _, tid := range tids {
		for v := uint32(1); v <= 3; v++ {
			secrets = append(secrets, hex.EncodeToString(terminals.DeriveKey(g.master, tid, v)))
		}
	}
	logs := g.logs.String()
	if n := strings.Count(logs, "\n"); n < 10 {
		t.Fatalf("only %d log lines captured; the capture is not wired:\n%s", n, logs)
	}
	if !strings.Contains(logs, `"logger":"audit"`) || !strings.Contains(logs, `"request_id"`) {
		t.Fatalf("no audit line with a request id in the log:\n%s", logs)
	}
	if f := logFindings(logs, secrets); len(f) > 0 {
		t.Fatalf("%d log lines leak a card number or key material:\n%s", len(f), strings.Join(f, "\n"))
	}

	// The check can fail: planted lines are caught, a clean line is not.
	for _, planted := range []string{
		`{"msg":"declined","inst":"bank:4111 1111 1111 1111"}`,
		`{"msg":"x","id":"` + panTest + `"}`,
		`{"msg":"x","key":"` + hex.EncodeToString(terminals.DeriveKey(g.master, "LOG-1", 2)) + `"}`,
		`{"msg":"x","token":"` + strings.ToUpper(g.token) + `"}`,
	} {
		if len(logFindings(planted, secrets)) != 1 {
			t.Errorf("planted line not caught: %s", planted)
		}
	}
	if f := logFindings(`{"msg":"ok","inst":"county:1234567890123","last4":"1111"}`, secrets); len(f) != 0 {
		t.Errorf("a clean line was flagged: %v", f)
	}
}
