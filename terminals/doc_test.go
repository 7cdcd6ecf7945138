package terminals

import (
	"bytes"
	"encoding/hex"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// docBlock returns the fenced block that follows marker in docs/protocol.md.
func docBlock(t *testing.T, doc, marker string) string {
	t.Helper()
	i := strings.Index(doc, marker)
	if i < 0 {
		t.Fatalf("%s lacks %s", protocolDoc, marker)
	}
	rest := doc[i+len(marker):]
	open := strings.Index(rest, "```")
	if open < 0 {
		t.Fatalf("no fenced block after %s", marker)
	}
	rest = rest[open+3:]
	rest = rest[strings.IndexByte(rest, '\n')+1:] // skip the info string
	end := strings.Index(rest, "```")
	if end < 0 {
		t.Fatalf("unterminated fenced block after %s", marker)
	}
	return rest[:end]
}

// TestProtocolDocExample recomputes the worked example of docs/protocol.md,
// so that the document a vendor implements from cannot drift from the code.
func TestProtocolDocExample(t *testing.T) {
	raw, err := os.ReadFile(protocolDoc)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	fields := map[string]string{}
	sep := regexp.MustCompile(`\s{2,}`)
	for _, line := range strings.Split(docBlock(t, doc, "<!-- example:frame -->"), "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		kv := sep.Split(strings.TrimSpace(line), 2)
		if len(kv) != 2 {
			t.Fatalf("example line %q is not `label  value`", line)
		}
		fields[kv[0]] = kv[1]
	}
	get := func(k string) string {
		v, ok := fields[k]
		if !ok {
			t.Fatalf("example lacks %q", k)
		}
		return v
	}
	master, err := hex.DecodeString(get("master key"))
	if err != nil || len(master) != 32 {
		t.Fatalf("example master key: %v (%d bytes)", err, len(master))
	}
	tid := get("terminal id")
	ver, err := strconv.ParseUint(get("key version"), 10, 32)
	if err != nil {
		t.Fatal(err)
	}
	if want := "scenepay/terminal-key/v1|" + tid + "|" + strconv.FormatUint(ver, 10); get("derivation input") != want {
		t.Errorf("derivation input = %q, want %q", get("derivation input"), want)
	}
	key := DeriveKey(master, tid, uint32(ver))
	if got := hex.EncodeToString(key); get("terminal key") != got {
		t.Errorf("terminal key = %s, DeriveKey gives %s", get("terminal key"), got)
	}
	s := NewSigner(key)
	for _, dir := range []string{"request", "reply"} {
		body := []byte(get(dir + " body"))
		sealed := s.Seal(nil, body)
		if got := string(sealed[len(body)+1:]); get(dir+" mac") != got {
			t.Errorf("%s mac = %s, HMAC gives %s", dir, get(dir+" mac"), got)
		}
	}
	req, err := DecodeRequest([]byte(get("request body")))
	if err != nil {
		t.Fatalf("example request body: %v", err)
	}
	if req.TID != tid || req.AppendJSON(nil) == nil || string(req.AppendJSON(nil)) != get("request body") {
		t.Errorf("example request is not the canonical body of terminal %s", tid)
	}
	rep, err := DecodeReply([]byte(get("reply body")))
	if err != nil {
		t.Fatalf("example reply body: %v", err)
	}
	if rep.TID != tid || rep.Txn != req.Txn || rep.Type != req.Type || string(rep.AppendJSON(nil)) != get("reply body") {
		t.Errorf("example reply does not answer the example request canonically")
	}

	// The wire payload block is exactly Seal(body): body, newline, MAC.
	wire := docBlock(t, doc, "<!-- example:payload -->")
	want := string(s.Seal(nil, []byte(get("request body")))) + "\n"
	if wire != want {
		t.Errorf("payload block = %q, want %q", wire, want)
	}
	if _, err := s.Open(bytes.TrimSuffix([]byte(wire), []byte("\n"))); err != nil {
		t.Errorf("payload block does not open: %v", err)
	}
}

// Every example request body shown in docs/protocol.md (indented lines that
// start with {"v":1,"type":...) decodes, and is in canonical form.
func TestProtocolDocExampleBodies(t *testing.T) {
	raw, err := os.ReadFile(protocolDoc)
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`(?m)^    (\{"v":1,"type":"(?:purchase|reversal|balance|heartbeat)".*\})$`)
	found := re.FindAllStringSubmatch(string(raw), -1)
	if len(found) < 4 {
		t.Fatalf("found %d example bodies, want at least one per type", len(found))
	}
	types := map[string]bool{}
	for _, m := range found {
		r, err := DecodeRequest([]byte(m[1]))
		if err != nil {
			t.Errorf("example %s: %v", m[1], err)
			continue
		}
		types[r.Type] = true
		if got := string(r.AppendJSON(nil)); got != m[1] {
			t.Errorf("example %s is not canonical; canonical form is %s", m[1], got)
		}
	}
	if len(types) != 4 {
		t.Errorf("examples cover types %v, want all four", types)
	}
}
