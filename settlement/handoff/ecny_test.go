package handoff

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

// ecnyBatch has an offline e-CNY payment (Unsynced), an online stall
// payment of another wallet (a sync by itself) and two syncs no row shows.
func ecnyBatch() *Batch {
	b := &Batch{Source: "gw-1", FirstLSN: 30, LastLSN: 36, Watermark: t0.Add(time.Hour)}
	b.ID = BatchID(b.Source, b.FirstLSN, b.LastLSN)
	b.Rows = []Txn{
		{Source: "gw-1", LSN: 30, At: t0, Merchant: "STALL-M", Terminal: "STALL-1", Scene: SceneStall, Op: OpPurchase,
			InstKind: "ecny", Account: "w-1", Amount: 1500, Auth: "02-0000000007", Txn: 9100, Unsynced: true},
		{Source: "gw-1", LSN: 32, At: t0.Add(time.Minute), Merchant: "STALL-M", Terminal: "STALL-1", Scene: SceneStall,
			Op: OpPurchase, InstKind: "ecny", Account: "w-2", Amount: 800, Txn: 9101},
	}
	b.Syncs = []Sync{
		{Account: "w-1", At: t0.Add(30 * time.Minute), LSN: 35},
		{Account: "w-3", At: t0.Add(30 * time.Minute), LSN: 35},
	}
	return b
}

func TestSyncsWallet(t *testing.T) {
	b := ecnyBatch()
	if b.Rows[0].SyncsWallet() {
		t.Error("an offline payment is a sync")
	}
	if !b.Rows[1].SyncsWallet() {
		t.Error("an online stall payment of a wallet is not a sync")
	}
	bus := b.Rows[1]
	bus.Scene = SceneBus
	county := b.Rows[1]
	county.InstKind = "county"
	refund := b.Rows[1]
	refund.Op, refund.Amount, refund.Orig = OpRefund, -800, 9000
	for name, r := range map[string]Txn{"bus": bus, "county": county, "refund": refund} {
		if r.SyncsWallet() {
			t.Errorf("%s row is a sync by itself", name)
		}
	}
}

func TestValidateECNY(t *testing.T) {
	cases := []struct {
		name  string
		edit  func(b *Batch)
		code  Code
		field string
	}{
		{"valid", func(b *Batch) {}, "", ""},
		{"no syncs", func(b *Batch) { b.Syncs = nil }, "", ""},
		{"syncs without rows", func(b *Batch) { b.Rows = nil }, "", ""},
		{"unsynced on a county row", func(b *Batch) { b.Rows[0].InstKind = "county" }, CodeMalformed, "rows[0].unsynced"},
		{"unsynced on a capture", func(b *Batch) { b.Rows[0].Op = OpCapture }, CodeMalformed, "rows[0].unsynced"},
		{"sync outside range", func(b *Batch) { b.Syncs[1].LSN = 37 }, CodeMalformed, "syncs[1].lsn"},
		{"sync before range", func(b *Batch) { b.Syncs[0].LSN = 29 }, CodeMalformed, "syncs[0].lsn"},
		{"syncs not ascending", func(b *Batch) { b.Syncs[1].LSN = 34 }, CodeMalformed, "syncs[1].lsn"},
		{"sync twice", func(b *Batch) { b.Syncs[1].Account = "w-1" }, CodeMalformed, "syncs[1].lsn"},
		{"sync without account", func(b *Batch) { b.Syncs[0].Account = "" }, CodeMalformed, "syncs[0].account"},
		{"sync pan account", func(b *Batch) { b.Syncs[0].Account = "4111111111111111" }, CodePAN, "syncs[0].account"},
		{"sync without time", func(b *Batch) { b.Syncs[0].At = time.Time{} }, CodeMalformed, "syncs[0].at"},
		{"sync nanosecond time", func(b *Batch) { b.Syncs[0].At = t0.Add(1) }, CodeMalformed, "syncs[0].at"},
		{"sync after watermark", func(b *Batch) { b.Syncs[1].At = b.Watermark.Add(time.Second) }, CodeMalformed, "syncs[1].at"},
		{"sync repeats its row", func(b *Batch) { b.Syncs[0] = Sync{Account: "w-2", At: t0, LSN: 32} }, CodeMalformed, "syncs[0].lsn"},
		{"sync beside an offline row", func(b *Batch) { b.Syncs[0] = Sync{Account: "w-1", At: t0, LSN: 30} }, "", ""},
		{"watermark only with syncs", func(b *Batch) {
			b.FirstLSN, b.LastLSN, b.Rows = 0, 0, nil
			b.ID = BatchID(b.Source, 0, 0)
		}, CodeMalformed, "syncs"},
		{"too many syncs", func(b *Batch) { b.Syncs = make([]Sync, SyncsMax+1) }, CodeOversize, "syncs"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := ecnyBatch()
			c.edit(b)
			err := b.Validate()
			if c.code == "" {
				if err != nil {
					t.Fatalf("Validate = %v, want nil", err)
				}
				return
			}
			var e *Error
			if !errors.As(err, &e) || e.Code != c.code || e.Field != c.field {
				t.Fatalf("Validate = %v, want %s at %q", err, c.code, c.field)
			}
			if strings.Contains(err.Error(), "4111") {
				t.Fatalf("error message echoes the card number: %v", err)
			}
		})
	}
}

func TestRoundTripECNY(t *testing.T) {
	b := ecnyBatch()
	data, err := Encode(b)
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	if strings.Count(s, `"uns":true`) != 1 || !strings.Contains(s, `"syncs":[{"acct":"w-1","at":`) {
		t.Fatalf("wire form lacks the flag or the syncs: %s", s)
	}
	got, err := Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, b) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, b)
	}
	// A batch without syncs has no "syncs" key; an empty list decodes to none.
	plain, err := Encode(validBatch())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(plain), `"syncs"`) || strings.Contains(string(plain), `"uns"`) {
		t.Fatalf("plain batch carries the new keys: %s", plain)
	}
	empty := strings.Replace(string(plain), `"rows":`, `"syncs":[],"rows":`, 1)
	got, err = Decode([]byte(empty))
	if err != nil || got.Syncs != nil {
		t.Fatalf("empty syncs list: %v, %#v", err, got)
	}
}

func TestDecodeStrictECNY(t *testing.T) {
	good, err := Encode(ecnyBatch())
	if err != nil {
		t.Fatal(err)
	}
	s := string(good)
	cases := []struct {
		name string
		in   string
		code Code
	}{
		{"unknown sync key", strings.Replace(s, `{"acct":"w-1",`, `{"acct":"w-1","kind":"ecny",`, 1), CodeMalformed},
		{"sync missing lsn", strings.Replace(s, `,"lsn":35}`, `}`, 1), CodeMalformed},
		{"sync missing at", strings.Replace(s, `"acct":"w-3","at":`, `"acct":"w-3","x":`, 1), CodeMalformed},
		{"unsynced as string", strings.Replace(s, `"uns":true`, `"uns":"true"`, 1), CodeMalformed},
		{"syncs not a list", strings.Replace(s, `"syncs":[`, `"syncs":{"a":[`, 1), CodeMalformed},
		{"too many syncs", strings.Replace(s, `"syncs":[`, `"syncs":[`+strings.Repeat(`{},`, SyncsMax+1), 1), CodeOversize},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.in == s {
				t.Fatal("edit did not apply")
			}
			_, err := Decode([]byte(c.in))
			var e *Error
			if !errors.As(err, &e) || e.Code != c.code {
				t.Fatalf("Decode = %v, want %s", err, c.code)
			}
		})
	}
}
