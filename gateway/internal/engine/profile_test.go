package engine

import (
	"context"
	"testing"
	"time"

	"scenepay/gateway/internal/core"
	"scenepay/gateway/internal/scene/transit"
	"scenepay/gateway/internal/vfs"
	"scenepay/terminals"
)

func setCardProfile(t *testing.T, e *Engine, id string, p transit.Profile) {
	t.Helper()
	r, err := e.Operate(context.Background(), core.Input{Op: core.OpSetProfile, Account: "county:" + id, Profile: p})
	if err != nil || r.Code != terminals.CodeApproved || r.Account.Profile != p {
		t.Fatalf("profile %s: %v %v %v", id, r.Code, r.Account.Profile, err)
	}
}

func cardProfile(t *testing.T, e *Engine, id string) transit.Profile {
	t.Helper()
	r, err := e.Operate(context.Background(), core.Input{Account: "county:" + id})
	if err != nil || !r.Found {
		t.Fatalf("read %s: %v", id, err)
	}
	return r.Account.Profile
}

// Concessions through the engine (default rules: senior free, student
// 50%): a senior card taps the flat route B1 free and a student pays half,
// and a crash keeps the profiles, whether they sit in the snapshot (C1,
// C2) or only in the journal after it (C3, C4).
func TestConcessionProfilesTapAndRestart(t *testing.T) {
	dir := t.TempDir()
	e, p := openEngine(t, dir, vfs.Default)
	setup(t, e, 10_000)
	for _, id := range []string{"C2", "C3", "C4", "C5"} {
		openCard(t, e, id, 10_000)
	}
	setCardProfile(t, e, "C1", transit.ProfileSenior)
	setCardProfile(t, e, "C2", transit.ProfileStudent)
	if got := tapB1(t, e, p, 1, "C1"); got != 0 {
		t.Fatalf("senior fare %d, want 0", got)
	}
	if got := tapB1(t, e, p, 2, "C2"); got != 100 {
		t.Fatalf("student fare %d, want 100", got)
	}
	if got := tapB1(t, e, p, 3, "C5"); got != 200 {
		t.Fatalf("adult fare %d, want 200", got)
	}
	if err := e.Snapshot(); err != nil {
		t.Fatal(err)
	}
	setCardProfile(t, e, "C3", transit.ProfileSenior)
	setCardProfile(t, e, "C4", transit.ProfileStudent)
	// A bank card rides on no concession.
	if r, err := e.Operate(context.Background(), core.Input{Op: core.OpOpenAccount, Account: "bank:tok_1", Amount: 1, Ref: "ob"}); err != nil || r.Code != terminals.CodeApproved {
		t.Fatalf("open bank: %v %v", r.Code, err)
	}
	if r, err := e.Operate(context.Background(), core.Input{Op: core.OpSetProfile, Account: "bank:tok_1", Profile: transit.ProfileSenior}); err != nil || r.Code != terminals.CodeMalformed {
		t.Fatalf("bank profile: %v %v, want MALFORMED", r.Code, err)
	}
	// Crash: no closing snapshot.
	crash(e)

	e2, p2 := openEngine(t, dir, vfs.Default)
	defer e2.Close()
	want := map[string]transit.Profile{"C1": transit.ProfileSenior, "C2": transit.ProfileStudent,
		"C3": transit.ProfileSenior, "C4": transit.ProfileStudent, "C5": transit.ProfileAdult}
	for id, w := range want {
		if got := cardProfile(t, e2, id); got != w {
			t.Fatalf("profile of %s after restart %v, want %v", id, got, w)
		}
	}
	if got := tapB1(t, e2, p2, 4, "C3"); got != 0 {
		t.Fatalf("senior fare after restart %d, want 0", got)
	}
	if got := tapB1(t, e2, p2, 5, "C4"); got != 100 {
		t.Fatalf("student fare after restart %d, want 100", got)
	}
	if b := cardBalance(t, e2, "C2"); b != 9_900 {
		t.Fatalf("student balance after restart %d, want 9900", b)
	}
}

// A profile change moves no money: the settlement feed skips its entry
// (the handoff maps every record it sees to a row or refuses it).
func TestEntryRecordsSkipsProfileChange(t *testing.T) {
	s := core.NewShard(0, nil)
	var out core.Output
	in := core.Input{Op: core.OpOpenAccount, Account: "county:C1", Ref: "o"}
	s.Step(time.Now(), &in, &out)
	in = core.Input{Op: core.OpSetProfile, Account: "county:C1", Profile: transit.ProfileSenior}
	s.Step(time.Now(), &in, &out)
	if out.Code != terminals.CodeApproved || len(out.Record) == 0 {
		t.Fatalf("set profile: %s, record %d bytes", out.Code, len(out.Record))
	}
	entry := append([]byte{entryOperator}, out.Record...)
	if tid, rec, err := EntryRecord(entry); err != nil || rec != nil || tid != "" {
		t.Fatalf("EntryRecord = %q, %v, %v; want no record", tid, rec, err)
	}
	n := 0
	if err := EntryRecords(entry, func(string, []byte) error { n++; return nil }); err != nil || n != 0 {
		t.Fatalf("EntryRecords called fn %d times (err %v), want 0", n, err)
	}
}
