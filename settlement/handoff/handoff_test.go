package handoff

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 3, 1, 2, 0, 0, 0, time.UTC)

func validBatch() *Batch {
	b := &Batch{Source: "gw-1", FirstLSN: 10, LastLSN: 14, Watermark: t0.Add(time.Minute)}
	b.ID = BatchID(b.Source, b.FirstLSN, b.LastLSN)
	b.Rows = []Txn{
		{Source: "gw-1", LSN: 10, At: t0, Merchant: "M1", Terminal: "BUS-1", Scene: SceneBus, Op: OpPurchase,
			InstKind: "county", Account: "county:C-1", Amount: 200, Auth: "10", Txn: 7},
		{Source: "gw-1", LSN: 13, At: t0.Add(time.Second), Merchant: "M1", Terminal: "BUS-1", Scene: SceneBus,
			Op: OpReversal, InstKind: "county", Account: "county:C-1", Amount: -200, Txn: 8, Orig: 7},
	}
	return b
}

func TestBatchIDDeterministic(t *testing.T) {
	if got, want := BatchID("gw-1", 1, 4096), "gw-1:1-4096"; got != want {
		t.Fatalf("BatchID = %q, want %q", got, want)
	}
	if BatchID("gw-1", 1, 2) == BatchID("gw-1", 1, 3) || BatchID("gw-1", 1, 2) == BatchID("gw-2", 1, 2) {
		t.Fatal("different ranges or sources share an id")
	}
}

func TestValidate(t *testing.T) {
	cases := []struct {
		name  string
		edit  func(b *Batch)
		code  Code
		field string
	}{
		{"valid", func(b *Batch) {}, "", ""},
		{"watermark only", func(b *Batch) { b.FirstLSN, b.LastLSN, b.Rows = 0, 0, nil; b.ID = BatchID(b.Source, 0, 0) }, "", ""},
		{"range without rows", func(b *Batch) { b.Rows = nil }, "", ""},
		{"watermark only with rows", func(b *Batch) { b.FirstLSN, b.LastLSN = 0, 0; b.ID = BatchID(b.Source, 0, 0) }, CodeMalformed, "rows"},
		{"bad source", func(b *Batch) { b.Source = "gw/1" }, CodeMalformed, "source"},
		{"empty source", func(b *Batch) { b.Source = "" }, CodeMalformed, "source"},
		{"wrong id", func(b *Batch) { b.ID = "gw-1:10-15" }, CodeMalformed, "id"},
		{"inverted range", func(b *Batch) { b.FirstLSN, b.LastLSN = 14, 10; b.ID = BatchID(b.Source, 14, 10) }, CodeMalformed, "lsn"},
		{"lsn too big", func(b *Batch) { b.LastLSN = 1 << 63; b.ID = BatchID(b.Source, 10, 1<<63) }, CodeMalformed, "lsn"},
		{"no watermark", func(b *Batch) { b.Watermark = time.Time{} }, CodeMalformed, "watermark"},
		{"row after watermark", func(b *Batch) { b.Watermark = t0 }, CodeMalformed, "rows[1].at"},
		{"row outside range", func(b *Batch) { b.Rows[1].LSN = 15 }, CodeMalformed, "rows[1].lsn"},
		{"rows not ascending", func(b *Batch) { b.Rows[1].LSN = 10 }, CodeMalformed, "rows[1].lsn"},
		{"row source differs", func(b *Batch) { b.Rows[0].Source = "gw-2" }, CodeMalformed, "rows[0].source"},
		{"pan account", func(b *Batch) { b.Rows[0].Account = "4111111111111111" }, CodePAN, "rows[0].account"},
		{"pan in account with prefix", func(b *Batch) { b.Rows[0].Account = "bank:4111 1111 1111 1111" }, CodePAN, "rows[0].account"},
		{"pan in auth", func(b *Batch) { b.Rows[0].Auth = "4111111111111111" }, CodePAN, "rows[0].auth"},
		{"purchase negative", func(b *Batch) { b.Rows[0].Amount = -1 }, CodeMalformed, "rows[0].amount"},
		{"reversal positive", func(b *Batch) { b.Rows[1].Amount = 1 }, CodeMalformed, "rows[1].amount"},
		{"reversal without orig", func(b *Batch) { b.Rows[1].Orig = 0 }, CodeMalformed, "rows[1].orig"},
		{"zero amount", func(b *Batch) { b.Rows[0].Amount = 0 }, CodeMalformed, "rows[0].amount"},
		{"amount over max", func(b *Batch) { b.Rows[0].Amount = 1_000_000_001 }, CodeMalformed, "rows[0].amount"},
		{"unknown scene", func(b *Batch) { b.Rows[0].Scene = "ferry" }, CodeMalformed, "rows[0].scene"},
		{"unknown op", func(b *Batch) { b.Rows[0].Op = "topup" }, CodeMalformed, "rows[0].op"},
		{"unknown inst", func(b *Batch) { b.Rows[0].InstKind = "cash" }, CodeMalformed, "rows[0].inst"},
		{"nanosecond time", func(b *Batch) { b.Rows[0].At = t0.Add(1) }, CodeMalformed, "rows[0].at"},
		{"control byte merchant", func(b *Batch) { b.Rows[0].Merchant = "M\n1" }, CodeMalformed, "rows[0].merchant"},
		{"long terminal", func(b *Batch) { b.Rows[0].Terminal = strings.Repeat("T", 33) }, CodeMalformed, "rows[0].terminal"},
		{"zero txn", func(b *Batch) { b.Rows[0].Txn = 0 }, CodeMalformed, "rows[0].txn"},
		{"too many rows", func(b *Batch) { b.Rows = make([]Txn, BatchRowsMax+1) }, CodeOversize, "rows"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := validBatch()
			c.edit(b)
			err := b.Validate()
			if c.code == "" {
				if err != nil {
					t.Fatalf("Validate = %v, want nil", err)
				}
				return
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Validate = %v, want *Error %s", err, c.code)
			}
			if e.Code != c.code || e.Field != c.field {
				t.Fatalf("Validate = %s at %q, want %s at %q", e.Code, e.Field, c.code, c.field)
			}
			if strings.Contains(err.Error(), "4111") {
				t.Fatalf("error message echoes the card number: %v", err)
			}
		})
	}
}

func TestRoundTrip(t *testing.T) {
	b := validBatch()
	data, err := Encode(b)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, b) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, b)
	}
}

func TestDecodeStrict(t *testing.T) {
	good, err := Encode(validBatch())
	if err != nil {
		t.Fatal(err)
	}
	s := string(good)
	cases := []struct {
		name string
		in   string
		code Code
	}{
		{"unknown key", strings.Replace(s, `"src"`, `"pan":"x","src"`, 1), CodeMalformed},
		{"unknown row key", strings.Replace(s, `"lsn":10`, `"lsn":10,"pan":"4111111111111111"`, 1), CodeMalformed},
		{"trailing data", s + "{}", CodeMalformed},
		{"missing rows", strings.Replace(s, `"rows"`, `"rowz"`, 1), CodeMalformed},
		{"amount as string", strings.Replace(s, `"amt":200`, `"amt":"200"`, 1), CodeMalformed},
		{"amount float", strings.Replace(s, `"amt":200`, `"amt":2.5`, 1), CodeMalformed},
		{"negative lsn", strings.Replace(s, `"lsn":10`, `"lsn":-10`, 1), CodeMalformed},
		{"not json", "\x00\x01", CodeMalformed},
		{"empty", "", CodeMalformed},
		{"oversize", strings.Repeat(" ", EncodedBytesMax+1), CodeOversize},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Decode([]byte(c.in))
			var e *Error
			if !errors.As(err, &e) || e.Code != c.code {
				t.Fatalf("Decode = %v, want code %s", err, c.code)
			}
			if !errors.Is(err, &Error{Code: c.code}) {
				t.Fatalf("errors.Is does not match code %s", c.code)
			}
		})
	}
}

// legsBatch has a QR payment with its market fee leg, its partial refund
// taking part of the leg back, and a hospital purchase with insurance legs.
func legsBatch() *Batch {
	b := &Batch{Source: "gw-1", FirstLSN: 20, LastLSN: 24, Watermark: t0.Add(time.Minute)}
	b.ID = BatchID(b.Source, b.FirstLSN, b.LastLSN)
	b.Rows = []Txn{
		{Source: "gw-1", LSN: 20, At: t0, Merchant: "STALL-M", Terminal: "STALL-1", Scene: SceneStall, Op: OpPurchase,
			InstKind: "county", Account: "county:C-1", Amount: 1550, Auth: "02-0000000001", Txn: 9001,
			Legs: []Leg{{Kind: LegMarketFee, Payee: "MKT-OP", Amount: 31}}},
		{Source: "gw-1", LSN: 21, At: t0, Merchant: "STALL-M", Terminal: "STALL-1", Scene: SceneStall, Op: OpRefund,
			InstKind: "county", Account: "county:C-1", Amount: -500, Txn: 9002, Orig: 9001,
			Legs: []Leg{{Kind: LegMarketFee, Payee: "MKT-OP", Amount: -10}}},
		{Source: "gw-1", LSN: 22, At: t0, Merchant: "HOSP", Terminal: "K-1", Scene: SceneKiosk, Op: OpPurchase,
			InstKind: "bank", Account: "tok-1", Amount: 300, Txn: 5,
			Legs: []Leg{{Kind: LegInsPooled, Payee: "ins-pool", Amount: 6000}, {Kind: LegInsPersonal, Payee: "ins-pers", Amount: 700}}},
		{Source: "gw-1", LSN: 24, At: t0, Merchant: "BUS-CO", Terminal: "operator", Scene: SceneBus, Op: OpDebtRecovery,
			InstKind: "county", Account: "C-9", Amount: 250, Txn: 24},
	}
	return b
}

func TestValidateLegs(t *testing.T) {
	cases := []struct {
		name  string
		edit  func(b *Batch)
		code  Code
		field string
	}{
		{"valid", func(b *Batch) {}, "", ""},
		{"fee equal to amount", func(b *Batch) { b.Rows[0].Legs[0].Amount = 1550 }, "", ""},
		{"unknown kind", func(b *Batch) { b.Rows[0].Legs[0].Kind = "tip" }, CodeMalformed, "rows[0].legs[0].kind"},
		{"too many legs", func(b *Batch) {
			b.Rows[2].Legs = append(b.Rows[2].Legs, Leg{Kind: LegMarketFee, Payee: "X", Amount: 1}, Leg{Kind: LegMarketFee, Payee: "Y", Amount: 1})
		}, CodeMalformed, "rows[2].legs"},
		{"duplicate kind", func(b *Batch) {
			b.Rows[0].Legs = append(b.Rows[0].Legs, Leg{Kind: LegMarketFee, Payee: "MKT-2", Amount: 1})
		}, CodeMalformed, "rows[0].legs[1].kind"},
		{"fee negative on payment", func(b *Batch) { b.Rows[0].Legs[0].Amount = -31 }, CodeMalformed, "rows[0].legs[0].amount"},
		{"fee zero", func(b *Batch) { b.Rows[0].Legs[0].Amount = 0 }, CodeMalformed, "rows[0].legs[0].amount"},
		{"fee over amount", func(b *Batch) { b.Rows[0].Legs[0].Amount = 1551 }, CodeMalformed, "rows[0].legs[0].amount"},
		{"fee positive on refund", func(b *Batch) { b.Rows[1].Legs[0].Amount = 10 }, CodeMalformed, "rows[1].legs[0].amount"},
		{"refund fee over amount", func(b *Batch) { b.Rows[1].Legs[0].Amount = -501 }, CodeMalformed, "rows[1].legs[0].amount"},
		{"fee on debt recovery", func(b *Batch) {
			b.Rows[3].Legs = []Leg{{Kind: LegMarketFee, Payee: "MKT-OP", Amount: 1}}
		}, CodeMalformed, "rows[3].legs[0].kind"},
		{"insurance on refund", func(b *Batch) {
			b.Rows[1].Legs = []Leg{{Kind: LegInsPooled, Payee: "ins-pool", Amount: 1}}
		}, CodeMalformed, "rows[1].legs[0].kind"},
		{"insurance zero", func(b *Batch) { b.Rows[2].Legs[1].Amount = 0 }, CodeMalformed, "rows[2].legs[1].amount"},
		{"insurance negative", func(b *Batch) { b.Rows[2].Legs[0].Amount = -6000 }, CodeMalformed, "rows[2].legs[0].amount"},
		{"insurance over max", func(b *Batch) { b.Rows[2].Legs[0].Amount = 1_000_000_001 }, CodeMalformed, "rows[2].legs[0].amount"},
		{"empty payee", func(b *Batch) { b.Rows[0].Legs[0].Payee = "" }, CodeMalformed, "rows[0].legs[0].payee"},
		{"long payee", func(b *Batch) { b.Rows[0].Legs[0].Payee = strings.Repeat("P", 65) }, CodeMalformed, "rows[0].legs[0].payee"},
		{"control byte payee", func(b *Batch) { b.Rows[2].Legs[1].Payee = "ins\x00" }, CodeMalformed, "rows[2].legs[1].payee"},
		{"pan payee", func(b *Batch) { b.Rows[0].Legs[0].Payee = "4111111111111111" }, CodePAN, "rows[0].legs[0].payee"},
		{"debt recovery negative", func(b *Batch) { b.Rows[3].Amount = -250 }, CodeMalformed, "rows[3].amount"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := legsBatch()
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
		})
	}
}

func TestRoundTripLegs(t *testing.T) {
	b := legsBatch()
	data, err := Encode(b)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), `"legs":[{"kind":"market_fee","payee":"MKT-OP","amt":31}]`) {
		t.Fatalf("wire form lacks the leg: %s", data)
	}
	got, err := Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, b) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, b)
	}
	// A row without legs has no "legs" key, and an empty list decodes to none.
	if strings.Count(string(data), `"legs"`) != 3 {
		t.Fatalf("want legs on three rows only: %s", data)
	}
	empty := strings.Replace(string(data), `"txn":24`, `"txn":24,"legs":[]`, 1)
	got, err = Decode([]byte(empty))
	if err != nil || got.Rows[3].Legs != nil {
		t.Fatalf("empty legs list: %v, legs %#v", err, got)
	}
}

func TestDecodeStrictLegs(t *testing.T) {
	good, err := Encode(legsBatch())
	if err != nil {
		t.Fatal(err)
	}
	s := string(good)
	leg := `{"kind":"market_fee","payee":"MKT-OP","amt":31}`
	cases := []struct {
		name string
		in   string
	}{
		{"unknown leg key", strings.Replace(s, `"payee":"MKT-OP","amt":31`, `"payee":"MKT-OP","amt":31,"rate":"0.02"`, 1)},
		{"leg amount float", strings.Replace(s, `"amt":31}`, `"amt":3.1}`, 1)},
		{"leg amount string", strings.Replace(s, `"amt":31}`, `"amt":"31"}`, 1)},
		{"leg missing kind", strings.Replace(s, `"kind":"market_fee","payee":"MKT-OP","amt":31`, `"payee":"MKT-OP","amt":31`, 1)},
		{"legs not a list", strings.Replace(s, `"legs":[`+leg+`]`, `"legs":`+leg, 1)},
		{"four legs", strings.Replace(s, `"legs":[`+leg+`]`, `"legs":[`+leg+`,`+leg+`,`+leg+`,`+leg+`]`, 1)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.in == s {
				t.Fatal("edit did not apply")
			}
			_, err := Decode([]byte(c.in))
			var e *Error
			if !errors.As(err, &e) || e.Code != CodeMalformed {
				t.Fatalf("Decode = %v, want MALFORMED", err)
			}
		})
	}
}
