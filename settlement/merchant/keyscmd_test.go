package merchant

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestKeysCommand(t *testing.T) {
	ctx := context.Background()
	k, err := OpenKeysSQLite(ctx, t.TempDir()+"/keys.db")
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	var out bytes.Buffer
	if err := RunKeysCommand(ctx, k, []string{"issue", "-merchant", "M-1", "-label", "till"}, &out); err != nil {
		t.Fatal(err)
	}
	key := strings.TrimSpace(out.String()[strings.Index(out.String(), "spm_"):])
	p, err := k.Authenticate(ctx, key)
	if err != nil || p.Merchant != "M-1" {
		t.Fatalf("issued key: %+v %v", p, err)
	}
	out.Reset()
	if err := RunKeysCommand(ctx, k, []string{"list", "-merchant", "M-1"}, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), p.KeyID+"\t") || !strings.Contains(out.String(), "active") || strings.Contains(out.String(), key) {
		t.Fatalf("list: %q", out.String())
	}
	if err := RunKeysCommand(ctx, k, []string{"revoke", "-id", p.KeyID}, &out); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Authenticate(ctx, key); err != ErrKeyInvalid {
		t.Fatalf("revoked key: %v", err)
	}
	for _, bad := range [][]string{nil, {"rotate"}, {"issue"}, {"issue", "-merchant", "M", "extra"}, {"revoke", "-id", "nope"}, {"list"}} {
		if err := RunKeysCommand(ctx, k, bad, &out); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}
