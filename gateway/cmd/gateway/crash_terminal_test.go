package main

// The crash test's terminals: each one runs purchases with txn ids 1, 2, 3...
// one at a time, the way a real terminal must (protocol section 10): it keeps
// the request, resends it on timeout and after BUSY or SYSTEM_ERROR, and
// takes the first approved or declined reply for that txn id as final. Every
// reply it ever receives is kept per txn id, so that the test can prove that
// no txn id was answered two different ways.

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"scenepay/gateway/internal/testkit"
	"scenepay/terminals"
)

const (
	// crashTxnsPerTerminalMax keeps every txn of a terminal inside the
	// gateway's replay window (1024 txn ids), so that all of them can be
	// resent at the end and must get their stored reply. It also bounds
	// crashTerm.txns and crashTerm.seen.
	crashTxnsPerTerminalMax = 900
	// crashReplyWait is how long a terminal waits for a reply before it
	// resends the same request.
	crashReplyWait = 1000 * time.Millisecond
	// crashFaultBackoff is the pause before resending after BUSY or
	// SYSTEM_ERROR (plus up to the same again of jitter).
	crashFaultBackoff = 100 * time.Millisecond
	// crashTxnWait bounds the whole exchange of one txn, resends included.
	crashTxnWait = 30 * time.Second
	// crashPublishWait bounds one MQTT publish of a terminal.
	crashPublishWait = 5 * time.Second
	// crashPaceMin/Max space a terminal's txns so that its count stays
	// under crashTxnsPerTerminalMax while the kills go on.
	crashPaceMin = 2 * time.Millisecond
	crashPaceMax = 12 * time.Millisecond
	// crashAmountMin/Max bound a purchase, fen.
	crashAmountMin = 100
	crashAmountMax = 1500
	// crashMessagesMax bounds the violation and error lists of one terminal.
	crashMessagesMax = 50
)

var errCrashAborted = errors.New("aborted")

// crashTxn is one purchase and its final answer, as the terminal saw it.
type crashTxn struct {
	req     terminals.Request
	acct    int    // index into the account list
	payload []byte // the bytes first sent
	code    terminals.Code
	reply   []byte // the first final reply received
	auth    string
	sends   int
}

// crashTerm is one terminal of the test; its fields belong to its goroutine
// until that goroutine ends.
type crashTerm struct {
	tid  string
	tm   *testkit.Terminal
	rng  *rand.Rand
	txns []crashTxn // txns[i] has txn id i+1

	// seen is the first approved or declined reply received for each txn
	// id, by anyone: the load, a late duplicate, or the final resend.
	seen     map[uint64][]byte
	reported map[uint64]bool // txn ids with a violation reported already

	violations []string // promise 2 broken: one txn id, two answers
	errs       []string // anything else a correct gateway never does

	resends   int // resends after a timeout
	faults    map[terminals.Code]int
	staleSeen int  // replies for another txn than the one in progress
	resending bool // in resendAll: replies for any txn id may arrive late

	replayDiffs   int // final resends whose reply differed from the first
	approvalDiffs int // of those, the ones where an approval was involved
}

func newCrashTerm(tid string, tm *testkit.Terminal, seed uint64, stream uint64) *crashTerm {
	return &crashTerm{
		tid: tid, tm: tm, rng: rand.New(rand.NewPCG(seed, stream)),
		seen:     make(map[uint64][]byte, crashTxnsPerTerminalMax),
		reported: map[uint64]bool{},
		faults:   map[terminals.Code]int{},
	}
}

func (c *crashTerm) errorf(format string, args ...any) {
	if len(c.errs) < crashMessagesMax {
		c.errs = append(c.errs, c.tid+": "+fmt.Sprintf(format, args...))
	}
}

func (c *crashTerm) violation(format string, args ...any) {
	if len(c.violations) < crashMessagesMax {
		c.violations = append(c.violations, c.tid+": "+fmt.Sprintf(format, args...))
	}
}

func crashDecode(key, raw []byte) (*terminals.Reply, error) {
	body, err := terminals.Open(key, raw)
	if err != nil {
		return nil, err
	}
	return terminals.DecodeReply(body)
}

// note checks and records one received reply. A reply of the fault class
// (BUSY, SYSTEM_ERROR) says "no effect, ask again" and is not an answer;
// every other reply for a txn id must be byte-identical to the first one
// (the gateway stores it and replays it).
func (c *crashTerm) note(raw []byte) *terminals.Reply {
	rep, err := crashDecode(c.tm.Key, raw)
	if err != nil {
		c.errorf("reply does not verify or decode: %v (%q)", err, raw)
		return nil
	}
	if rep.TID != c.tid {
		c.errorf("reply for terminal %q on my reply topic", rep.TID)
		return nil
	}
	if rep.Code.Class() == terminals.ClassFault {
		c.faults[rep.Code]++
		return rep
	}
	first, ok := c.seen[rep.Txn]
	if !ok {
		if rep.Txn <= crashTxnsPerTerminalMax {
			c.seen[rep.Txn] = raw
		}
		return rep
	}
	if !bytes.Equal(first, raw) && !c.reported[rep.Txn] {
		c.reported[rep.Txn] = true
		prev, _ := crashDecode(c.tm.Key, first)
		if prev != nil && prev.Code != rep.Code {
			c.violation("txn %d answered %s %s, later %s %s", rep.Txn, prev.Code, prev.Code.Name(), rep.Code, rep.Code.Name())
		} else {
			c.violation("txn %d answered twice with the same code but different bytes:\n  %q\n  %q", rep.Txn, first, raw)
		}
	}
	return rep
}

func (c *crashTerm) send(p []byte) {
	tok := c.tm.Client.Publish(c.tm.Topics.Request(c.tid), 1, false, p)
	if !tok.WaitTimeout(crashPublishWait) {
		c.errorf("publish not acknowledged by the broker within %s", crashPublishWait)
	} else if err := tok.Error(); err != nil {
		c.errorf("publish: %v", err)
	}
}

// exchange sends payload (txn id txn) and returns the final reply for it:
// it resends on timeout (every second resend re-stamped with a new ts when
// restamp is set: the content hash excludes ts) and after a fault reply.
func (c *crashTerm) exchange(t *crashTxn, restamp bool, wait time.Duration, abort <-chan struct{}) ([]byte, *terminals.Reply, error) {
	txn := t.req.Txn
	deadline := time.Now().Add(crashTxnWait)
	timer := time.NewTimer(wait)
	defer timer.Stop()
	c.send(t.payload)
	t.sends++
	for {
		select {
		case <-abort:
			return nil, nil, errCrashAborted
		case raw := <-c.tm.Replies:
			rep := c.note(raw)
			switch {
			case rep == nil:
				continue
			case rep.Txn > txn && !c.resending:
				c.errorf("reply for txn %d, not sent yet (current %d)", rep.Txn, txn)
				continue
			case rep.Txn != txn:
				c.staleSeen++
				continue
			}
			if rep.Code.Class() == terminals.ClassFault {
				// Retry the same id after a pause; a late reply of an
				// earlier send may still come first and is taken then.
				timer.Reset(crashFaultBackoff + time.Duration(c.rng.Int64N(int64(crashFaultBackoff))))
				continue
			}
			return raw, rep, nil
		case <-timer.C:
			if time.Now().After(deadline) {
				return nil, nil, fmt.Errorf("txn %d: no final reply within %s (%d sends)", txn, crashTxnWait, t.sends)
			}
			p := t.payload
			if restamp && t.sends%2 == 0 {
				p = c.tm.Request(t.req) // t.req.TS is 0: stamped now
			}
			c.resends++
			t.sends++
			c.send(p)
			timer.Reset(wait)
		}
	}
}

// run is the load: purchases until stop is set or the txn budget is spent.
// The txn in progress when stop is set is finished first.
func (c *crashTerm) run(accounts []string, stop *atomic.Bool, abort <-chan struct{}) {
	for txn := uint64(1); txn <= crashTxnsPerTerminalMax && !stop.Load(); txn++ {
		acct := c.rng.IntN(len(accounts))
		t := crashTxn{
			req: terminals.Request{
				Type: terminals.TypePurchase, Txn: txn,
				Amt:  crashAmountMin + c.rng.Int64N(crashAmountMax-crashAmountMin+1),
				Inst: terminals.Instrument{Kind: terminals.InstCounty, ID: accounts[acct]},
			},
			acct: acct,
		}
		t.payload = c.tm.Request(t.req)
		raw, rep, err := c.exchange(&t, true, crashReplyWait, abort)
		if err != nil {
			if !errors.Is(err, errCrashAborted) {
				c.errorf("%v", err)
			}
			return
		}
		t.code, t.reply, t.auth = rep.Code, raw, rep.Auth
		switch rep.Code.Class() {
		case terminals.ClassApproved:
			if rep.Auth == "" {
				c.errorf("txn %d approved without an auth ref", txn)
			}
		case terminals.ClassDecline:
		default:
			c.errorf("txn %d: unexpected %s %s", txn, rep.Code, rep.Code.Name())
		}
		c.txns = append(c.txns, t)
		pace := crashPaceMin + time.Duration(c.rng.Int64N(int64(crashPaceMax-crashPaceMin)))
		select {
		case <-abort:
			return
		case <-time.After(pace):
		}
	}
}

// resendAll resends the first bytes of every answered txn (approved or
// declined: both are stored replies) and checks that the reply is the one
// received first, byte for byte.
func (c *crashTerm) resendAll(abort <-chan struct{}) (checked int) {
	c.resending = true
	for i := range c.txns {
		t := &c.txns[i]
		raw, rep, err := c.exchange(t, false, 3*time.Second, abort)
		if err != nil {
			if !errors.Is(err, errCrashAborted) {
				c.errorf("resend: %v", err)
			}
			return checked
		}
		checked++
		if !bytes.Equal(raw, t.reply) {
			// note has reported the two replies as a violation already.
			c.replayDiffs++
			if rep.Code.Approved() || t.code.Approved() {
				c.approvalDiffs++
			}
		}
	}
	return checked
}
