package engine

import (
	"encoding/binary"
	"testing"
	"time"

	"scenepay/terminals"
)

// TestHandoffBusyRefusesNewPayments: while the handoff reports its backlog
// past the bound, a purchase is refused with BUSY and has no effect; once
// cleared, the same request is approved.
func TestHandoffBusyRefusesNewPayments(t *testing.T) {
	e, p := openEngine(t, t.TempDir(), nil)
	defer e.Close()
	setup(t, e, 1000)
	e.SetHandoffBusy(true)
	e.HandleMessage(topic, buy(1, 100))
	if rep := decode(t, p.next(t, 5*time.Second)); rep.Code != terminals.CodeBusy {
		t.Fatalf("purchase while the handoff is busy: %s, want BUSY", rep.Code)
	}
	if b := balance(t, e); b != 1000 {
		t.Fatalf("balance %d after a refused purchase, want 1000", b)
	}
	e.SetHandoffBusy(false)
	e.HandleMessage(topic, buy(1, 100))
	if rep := decode(t, p.next(t, 5*time.Second)); rep.Code != terminals.CodeApproved {
		t.Fatalf("purchase after the backlog cleared: %s, want approved", rep.Code)
	}
}

// A request entry answered without a ledger decision has an empty record:
// it carries no record for settlement (it once reached the handoff as a
// zero-length record, which stopped the handoff as corrupt).
func TestEntryRecordsSkipsEmptyRecord(t *testing.T) {
	entry := appendTxnEntry(nil, &txnEntry{tid: "T1", txn: 5, code: terminals.CodeApproved, tomb: true, orig: 4, reply: []byte("r")})
	tid, rec, err := EntryRecord(entry)
	if err != nil || rec != nil || tid != "T1" {
		t.Fatalf("EntryRecord = %q, %v, %v; want T1 and no record", tid, rec, err)
	}
	n := 0
	if err := EntryRecords(entry, func(string, []byte) error { n++; return nil }); err != nil || n != 0 {
		t.Fatalf("EntryRecords called fn %d times (err %v), want 0", n, err)
	}
	withRec := appendTxnEntry(nil, &txnEntry{tid: "T1", txn: 6, code: terminals.CodeApproved, record: []byte{1, 2, 3}, reply: []byte("r")})
	if _, rec, err := EntryRecord(withRec); err != nil || len(rec) != 3 {
		t.Fatalf("EntryRecord of an entry with a record = %v, %v", rec, err)
	}
}

// EntrySplit reads the insurance split of a hospital entry (type 5) and
// nothing from other entries; the payees come from the configuration.
func TestEntrySplitAndPayees(t *testing.T) {
	te := appendTxnEntry(nil, &txnEntry{tid: "K1", txn: 5, code: terminals.CodeApproved, reply: []byte("r")})
	entry := []byte{entryHospital, 0, 0, 1}
	entry = binary.AppendUvarint(entry, 6000)
	entry = binary.AppendUvarint(entry, 700)
	entry = binary.AppendUvarint(entry, 300)
	entry = binary.AppendUvarint(entry, uint64(len(te)))
	entry = append(entry, te...)
	pooled, personal, ok, err := EntrySplit(entry)
	if err != nil || !ok || pooled != 6000 || personal != 700 {
		t.Fatalf("EntrySplit = %d, %d, %v, %v; want 6000, 700", pooled, personal, ok, err)
	}
	noSplit := append([]byte{entryHospital, 0, 0, 0}, binary.AppendUvarint(nil, uint64(len(te)))...)
	if _, _, ok, err := EntrySplit(append(noSplit, te...)); ok || err != nil {
		t.Fatalf("hospital entry without a split: ok %v err %v", ok, err)
	}
	if _, _, ok, err := EntrySplit(te); ok || err != nil {
		t.Fatalf("request entry: ok %v err %v", ok, err)
	}
	if _, _, _, err := EntrySplit(entry[:6]); err == nil {
		t.Fatal("torn hospital entry: no error")
	}
	e, _ := openEngine(t, t.TempDir(), nil)
	defer e.Close()
	p := e.SettlementPayees()
	if p.InsPooled != "insurance-pooled-fund" || p.InsPersonal != "insurance-personal-account" || p.Debt != "transit-operator" {
		t.Fatalf("default payees %+v", p)
	}
}
