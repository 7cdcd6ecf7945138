package core

import (
	"bytes"
	"errors"
	"testing"

	"scenepay/gateway/internal/scene/transit"
	. "scenepay/terminals"
)

func setProfile(key string, p transit.Profile) Input {
	return Input{Op: OpSetProfile, Account: key, Profile: p}
}

// TestSetProfile: the operator sets a county card's profile (journaled,
// replayed, kept by snapshots) and the fare rules price the card's taps by
// it (default concessions: senior free, student 50%).
func TestSetProfile(t *testing.T) {
	const c = "county:C1"
	cfg := &Config{}
	s := NewShard(1, cfg)
	recs := runSteps(t, s, []step{
		{name: "open", in: open(c, 1000), code: CodeApproved, avail: 1000, rec: true},
		{name: "open bank", in: open("bank:B1", 1000), code: CodeApproved, avail: 1000, rec: true},
		{name: "senior", in: setProfile(c, transit.ProfileSenior), code: CodeApproved, avail: 1000, rec: true},
		{name: "senior again: no effect", in: setProfile(c, transit.ProfileSenior), code: CodeApproved, avail: 1000},
		{name: "bank card: refused", in: setProfile("bank:B1", transit.ProfileSenior), code: CodeMalformed, avail: 1000},
		{name: "unknown card", in: setProfile("county:NOPE", transit.ProfileSenior), code: CodeUnknownInstrument, avail: 0},
		{name: "profile out of range", in: setProfile(c, 9), code: CodeMalformed, avail: 1000},
	})
	if v, _ := s.Account(c); v.Profile != transit.ProfileSenior {
		t.Fatalf("profile %v, want senior", v.Profile)
	}
	recs = append(recs, runTaps(t, s, []tapRow{
		{"senior B1: free", 0, tapIn(c, "B1", "", 1), CodeApproved, true, 0, 1000, 0, TapAmounts{}},
	})...)
	recs = append(recs, runSteps(t, s, []step{
		{name: "student", in: setProfile(c, transit.ProfileStudent), code: CodeApproved, avail: 1000, rec: true},
	})...)
	recs = append(recs, runTaps(t, s, []tapRow{
		// Past the transfer window: a new fare, half of 200.
		{"student B1: 50%", 200, tapIn(c, "B1", "", 2), CodeApproved, true, 100, 900, 0, TapAmounts{Fare: 100, Charge: 100}},
	})...)
	r := replay(t, s, cfg, recs)
	if v, _ := r.Account(c); v.Profile != transit.ProfileStudent {
		t.Fatalf("replayed profile %v, want student", v.Profile)
	}
	var b bytes.Buffer
	if err := s.Snapshot(&b); err != nil {
		t.Fatal(err)
	}
	rs := NewShard(1, cfg)
	if err := rs.Restore(bytes.NewReader(b.Bytes())); err != nil {
		t.Fatal(err)
	}
	assertSame(t, "restore", s, rs)
	if v, _ := rs.Account(c); v.Profile != transit.ProfileStudent {
		t.Fatalf("restored profile %v, want student", v.Profile)
	}
}

// TestSetProfileBeforeTap: a card that never tapped gets its profile; the
// first tap is priced by it, live and after a snapshot without the tap.
func TestSetProfileBeforeTap(t *testing.T) {
	s := NewShard(1, nil)
	runSteps(t, s, []step{
		{name: "open", in: open("county:C2", 500), code: CodeApproved, avail: 500, rec: true},
		{name: "disabled", in: setProfile("county:C2", transit.ProfileDisabled), code: CodeApproved, avail: 500, rec: true},
	})
	var b bytes.Buffer
	if err := s.Snapshot(&b); err != nil {
		t.Fatal(err)
	}
	r := NewShard(1, nil)
	if err := r.Restore(bytes.NewReader(b.Bytes())); err != nil {
		t.Fatal(err)
	}
	runTaps(t, r, []tapRow{
		{"disabled D1: nothing held", 0, tapIn("county:C2", "D1", "S1", 1), CodeApproved, true, 0, 500, 0, TapAmounts{}},
	})
}

// TestSetProfileReplayRefusesBadRecords: a set-profile record that does
// not fit the shard (out-of-range profile, a bank account, money moved) is
// corruption on replay.
func TestSetProfileReplayRefusesBadRecords(t *testing.T) {
	s := NewShard(1, nil)
	recs := runSteps(t, s, []step{
		{name: "open", in: open("county:C1", 1000), code: CodeApproved, avail: 1000, rec: true},
		{name: "open bank", in: open("bank:B1", 1000), code: CodeApproved, avail: 1000, rec: true},
		{name: "student", in: setProfile("county:C1", transit.ProfileStudent), code: CodeApproved, avail: 1000, rec: true},
	})
	var good Record
	if err := DecodeRecord(recs[2], &good); err != nil {
		t.Fatal(err)
	}
	if good.Op != OpSetProfile || good.Version != RecordVersion || good.Orig != uint64(transit.ProfileStudent) || good.Amount != 0 {
		t.Fatalf("record %+v", good)
	}
	if enc := good.AppendBinary(nil); !bytes.Equal(enc, recs[2]) {
		t.Fatal("decode then encode is not the identity")
	}
	for _, tc := range []struct {
		name string
		mod  func(r *Record)
	}{
		{"profile out of range", func(r *Record) { r.Orig = 4 }},
		{"profile over a byte", func(r *Record) { r.Orig = 256 + 1 }},
		{"bank account", func(r *Record) { r.Account, r.Balance = "bank:B1", 1000 }},
		{"money moved", func(r *Record) { r.Amount = 5 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := NewShard(1, nil)
			for i := range 2 {
				var rec Record
				if err := DecodeRecord(recs[i], &rec); err != nil {
					t.Fatal(err)
				}
				if err := r.Apply(&rec); err != nil {
					t.Fatal(err)
				}
			}
			bad := good
			tc.mod(&bad)
			var dec Record
			if err := DecodeRecord(bad.AppendBinary(nil), &dec); err != nil {
				t.Fatal(err)
			}
			if err := r.Apply(&dec); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("apply: %v, want corruption", err)
			}
		})
	}
}
