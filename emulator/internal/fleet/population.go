// Package fleet owns runs of many virtual terminals against one gateway: a
// deterministic population (terminals, county cards, bank tokens, e-CNY
// wallets and their opening balances) drawn from a seed, provisioning
// through the operator API, the scenarios (the "demo" of make run), the
// readable per-outcome output and summary, and the ledger of what terminals
// were told, which the end-of-run audit compares with the gateway's balances.
// Beside the terminals it plays the bank's wallet backend paying the stalls'
// merchant-presented codes (walletpay.go, with the wallet token when the
// run has one) and the card holders who repay transit debt with a top-up
// whose debt paid it checks exactly (debt.go); the ledger books both
// (ledger_wallet.go) and the settlement audit includes them.
//
// The same seed gives the same population and the same demo script, so a
// failing run can be replayed.
package fleet

import (
	"fmt"
	"math/rand/v2"

	"scenepay/terminals"
)

// Terminal kinds, as the operator API names them.
const (
	KindBus   = "bus"
	KindStall = "stall"
	KindKiosk = "kiosk"
)

// Population bounds.
const (
	// TerminalsMax bounds a fleet; terminal ids have four digits per kind.
	TerminalsMax = 3 * 9999
	// AccountsMax bounds the accounts a population opens.
	AccountsMax = 100_000
)

// TerminalSpec is one terminal to register and run.
type TerminalSpec struct {
	TID      string
	Kind     string
	Merchant string
}

// AccountSpec is one account to open. Money in fen.
type AccountSpec struct {
	Inst    terminals.Instrument
	Class   int   // e-CNY wallet class 1..4; 0 otherwise
	Opening int64 // opening balance asked for
}

// Population is everything a run provisions, derived from Seed only.
type Population struct {
	Seed      uint64
	Terminals []TerminalSpec
	Accounts  []AccountSpec
	// Roles the demo relies on, as indices into Accounts.
	LowCounty int // a county card holding less than one bus fare
	ClassFour int // a class-4 e-CNY wallet with more than its single limit
	County    []int
	Bank      []int
	ECNY      []int
}

// ECNYBalanceCap is the default balance cap per wallet class in fen
// (DOMAIN.md: 500,000 / 10,000 / 2,000 / 1,000 CNY). Opening balances stay
// below it so that opening is never refused LIMIT_BALANCE.
var ECNYBalanceCap = [5]int64{0, 50_000_000, 1_000_000, 200_000, 100_000}

// ECNYSingleLimit is the default single-payment limit per class in fen.
var ECNYSingleLimit = [5]int64{0, 5_000_000, 500_000, 200_000, 50_000}

// Fares and price ranges in fen.
const (
	BusFare         = 200
	LowCountyOpen   = 100    // less than BusFare: the INSUFFICIENT_FUNDS demo
	ClassFourOpen   = 80_000 // under the class-4 cap, above its single limit
	ClassFourBreach = 60_000 // a kiosk bill above the class-4 single limit
)

// NewPopulation draws n terminals (kinds in turn: bus, stall, kiosk; at
// least one of each) and accounts accounts (at least 8) from seed.
func NewPopulation(seed uint64, n, accounts int) (Population, error) {
	if n < 3 {
		n = 3
	}
	if n > TerminalsMax {
		return Population{}, fmt.Errorf("fleet: %d terminals, more than %d", n, TerminalsMax)
	}
	if accounts < 8 {
		accounts = 8
	}
	if accounts > AccountsMax {
		return Population{}, fmt.Errorf("fleet: %d accounts, more than %d", accounts, AccountsMax)
	}
	rng := rand.New(rand.NewPCG(seed, seed^0x5ce9e9a7))
	p := Population{Seed: seed}
	count := map[string]int{}
	for i := range n {
		kind := [3]string{KindBus, KindStall, KindKiosk}[i%3]
		count[kind]++
		var t TerminalSpec
		switch kind {
		case KindBus:
			t = TerminalSpec{TID: fmt.Sprintf("BUS-%04d", count[kind]), Kind: kind, Merchant: "M-BUS"}
		case KindStall:
			t = TerminalSpec{TID: fmt.Sprintf("STALL-%04d", count[kind]), Kind: kind, Merchant: fmt.Sprintf("M-STALL-%04d", count[kind])}
		default:
			t = TerminalSpec{TID: fmt.Sprintf("KIOSK-%04d", count[kind]), Kind: kind, Merchant: "M-HOSP"}
		}
		p.Terminals = append(p.Terminals, t)
	}
	seen := map[string]bool{}
	add := func(a AccountSpec) int {
		p.Accounts = append(p.Accounts, a)
		seen[a.Inst.Key()] = true
		return len(p.Accounts) - 1
	}
	// County cards: ten digits starting 88, too short to look like a PAN.
	countyID := func() string {
		for {
			id := fmt.Sprintf("88%08d", rng.IntN(100_000_000))
			if !seen[terminals.InstCounty+":"+id] {
				return id
			}
		}
	}
	hexID := func(prefix string, nbytes int) string {
		for {
			b := make([]byte, nbytes)
			for i := range b {
				b[i] = byte(rng.UintN(256))
			}
			id := fmt.Sprintf("%s%x", prefix, b)
			if !seen[id] && !seen[terminals.InstBank+":"+id] && !seen[terminals.InstECNY+":"+id] {
				return id
			}
		}
	}
	p.LowCounty = add(AccountSpec{Inst: terminals.Instrument{Kind: terminals.InstCounty, ID: countyID()}, Opening: LowCountyOpen})
	p.ClassFour = add(AccountSpec{Inst: terminals.Instrument{Kind: terminals.InstECNY, ID: hexID("w-", 6)}, Class: 4, Opening: ClassFourOpen})
	for len(p.Accounts) < accounts {
		switch len(p.Accounts) % 3 {
		case 0: // county card: 20..200 CNY
			i := add(AccountSpec{Inst: terminals.Instrument{Kind: terminals.InstCounty, ID: countyID()}, Opening: 2_000 + 100*rng.Int64N(181)})
			p.County = append(p.County, i)
		case 1: // bank token: 500..5000 CNY
			last4 := fmt.Sprintf("%04d", rng.IntN(10_000))
			i := add(AccountSpec{Inst: terminals.Instrument{Kind: terminals.InstBank, ID: hexID("tok_", 8), Last4: last4}, Opening: 50_000 + 100*rng.Int64N(4_501)})
			p.Bank = append(p.Bank, i)
		default: // e-CNY wallet of class 1..4, opened at 20..90% of its cap
			class := 1 + rng.IntN(4)
			bcap := ECNYBalanceCap[class]
			if class == 1 {
				bcap = 1_000_000 // a village wallet does not hold 500,000 CNY
			}
			open := bcap / 100 * int64(20+rng.IntN(71))
			i := add(AccountSpec{Inst: terminals.Instrument{Kind: terminals.InstECNY, ID: hexID("w-", 6)}, Class: class, Opening: open})
			p.ECNY = append(p.ECNY, i)
		}
	}
	return p, nil
}

// Pick returns an instrument and amount for a purchase at a terminal of
// kind, drawn from rng: bus fares on county cards and wallets, stall sales
// on every instrument, hospital bills on bank cards and wallets. Amounts
// stay below the class single limits so that load is mostly approvals.
func (p *Population) Pick(rng *rand.Rand, kind string) (terminals.Instrument, int64) {
	pick := func(idx []int) AccountSpec { return p.Accounts[idx[rng.IntN(len(idx))]] }
	switch kind {
	case KindBus:
		if rng.IntN(4) == 0 {
			return pick(p.ECNY).Inst, BusFare
		}
		return pick(p.County).Inst, BusFare
	case KindStall:
		amt := 300 + 10*rng.Int64N(471) // 3..50 CNY
		switch rng.IntN(3) {
		case 0:
			return pick(p.County).Inst, amt
		case 1:
			return pick(p.Bank).Inst, amt
		}
		return pick(p.ECNY).Inst, amt
	default:
		amt := 500 + 100*rng.Int64N(196) // 5..200 CNY
		if rng.IntN(2) == 0 {
			return pick(p.Bank).Inst, amt
		}
		return pick(p.ECNY).Inst, amt
	}
}
