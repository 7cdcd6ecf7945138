package opapi

import (
	"strings"
	"testing"
	"time"
)

// Every config change is audited like other operator changes: one line per
// PUT, accepted or refused, with the request id, the result and, for a
// refusal, the scene decoder's reason.
func TestConfigChangesAreAudited(t *testing.T) {
	now := time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)
	base, logs, _ := startLogged(t, &now)
	if resp, m := do(t, "PUT", base+"/v1/config/transit", "cfg-1", transitDoc(t, 300)); resp.StatusCode != 200 {
		t.Fatalf("put: %d %v", resp.StatusCode, m)
	}
	if resp, m := do(t, "PUT", base+"/v1/config/transit", "cfg-2", `{"fare":300}`); resp.StatusCode != 400 {
		t.Fatalf("invalid put: %d %v", resp.StatusCode, m)
	}
	got := auditLines(t, logs.String())
	if len(got) != 2 {
		t.Fatalf("%d audit lines, want 2:\n%s", len(got), logs.String())
	}
	ok, bad := got[0], got[1]
	if ok["action"] != "config.put" || ok["target"] != "transit" || ok["result"] != "ok" || ok["version"] != 1.0 || ok["request_id"] != "cfg-1" {
		t.Errorf("accepted change audited as %v", ok)
	}
	if fp, _ := ok["doc_sha256"].(string); len(fp) != 16 {
		t.Errorf("doc fingerprint %v", ok["doc_sha256"])
	}
	reason, _ := bad["reason"].(string)
	if bad["result"] != "invalid" || bad["request_id"] != "cfg-2" || !strings.Contains(reason, "fare") {
		t.Errorf("refused change audited as %v", bad)
	}
}
