package market

import (
	"time"

	"scenepay/terminals"
)

// Stall is a market stall as the bank onboarded it. Business marks a stall
// with clear business activity, which since 2022-03-01 (PBoC notice 259)
// must collect with a business ("personal business") receiving code.
type Stall struct {
	ID       string
	Merchant string // payee merchant id of the stall's leg
	Business bool
}

// StallCode is a merchant-presented receiving code printed or shown at a stall.
// The times are UTC Unix milliseconds; the lifecycle is in stallreg.go.
type StallCode struct {
	ID       string
	Stall    string
	Dynamic  bool // generated per payment by the stall terminal
	Business bool // business receiving code, else personal
	// Amount is what a dynamic code collects, fen (0 for a static code,
	// which collects what the payer enters).
	Amount int64
	// ShownAt is when the code was registered: for a dynamic code the time
	// the stall terminal shows it, from which its freshness is counted.
	ShownAt int64
	// Expires is when a dynamic code stops collecting (0 for a static code).
	Expires int64
	// Revoked is when the operator revoked the code (0 while live).
	Revoked int64
	// PaidBy is the payment that used a dynamic code ("" while unused).
	PaidBy string
}

// Registry holds the stalls and their receiving codes. It is reference data
// loaded from the operator's records, bounded by StallCodesMax entries each.
type Registry struct {
	max    int
	stalls map[string]Stall
	codes  map[string]StallCode
}

// NewRegistry returns an empty registry bounded by r's StallCodesMax.
func NewRegistry(r *Rules) *Registry {
	return &Registry{max: r.cfg.StallCodesMax, stalls: map[string]Stall{}, codes: map[string]StallCode{}}
}

// Registration errors (operator input, not payment declines).
var (
	ErrRegistryFull        = &Decline{Code: terminals.CodeBusy, Reason: "stall registry full"}
	ErrUnknownStall        = &Decline{Code: terminals.CodeUnknownInstrument, Reason: "unknown stall"}
	ErrPersonalForBusiness = &Decline{Code: terminals.CodeMalformed, Reason: "a stall with clear business activity needs a business code (PBoC notice 259)"}
)

func validID(s string) bool { return len(s) > 0 && len(s) <= MaxIDLen }

// AddStall adds or replaces a stall.
func (g *Registry) AddStall(s Stall) error {
	if !validID(s.ID) || !validID(s.Merchant) {
		return ErrFieldTooLong
	}
	if _, ok := g.stalls[s.ID]; !ok && len(g.stalls) >= g.max {
		return ErrRegistryFull
	}
	g.stalls[s.ID] = s
	return nil
}

// AddCode registers a receiving code of a known stall, refusing a personal
// code for a business stall (notice 259).
func (g *Registry) AddCode(c StallCode) error {
	if !validID(c.ID) {
		return ErrFieldTooLong
	}
	s, ok := g.stalls[c.Stall]
	if !ok {
		return ErrUnknownStall
	}
	if s.Business && !c.Business {
		return ErrPersonalForBusiness
	}
	if _, ok := g.codes[c.ID]; !ok && len(g.codes) >= g.max {
		return ErrRegistryFull
	}
	g.codes[c.ID] = c
	return nil
}

// Stall returns a stall by id.
func (g *Registry) Stall(id string) (Stall, bool) { s, ok := g.stalls[id]; return s, ok }

// Code returns a receiving code by id.
func (g *Registry) Code(id string) (StallCode, bool) { c, ok := g.codes[id]; return c, ok }

// Scan describes how a merchant-presented code was paid: the verification
// class the payer's app performed, whether the collection was remote (not
// face to face), and when the stall terminal generated a dynamic code.
type Scan struct {
	Verified Class
	Remote   bool
	ShownAt  time.Time // dynamic codes only
}

// ClassFor decides which PBoC class limit applies to a payment to a
// merchant-presented code (PBoC 2018 rules and notice 259):
//   - a static code is class D whatever the verification;
//   - a dynamic code scanned after its freshness window (or shown in the
//     future) is a screenshot, which counts as static: class D;
//   - otherwise the class is the payer's verification (A, B or C);
//   - a static personal code may not collect remotely (ErrRemoteStatic);
//     a screenshot of a personal dynamic code is static, so the same holds.
//
// Consumer-presented codes carry their class (PayCode.Class) and are
// dynamic by construction.
func (r *Rules) ClassFor(code *StallCode, s Scan, now time.Time) (Class, error) {
	if s.Verified < ClassA || s.Verified > ClassC {
		return 0, ErrBadClass
	}
	static := !code.Dynamic
	if code.Dynamic {
		age := now.Unix() - s.ShownAt.Unix()
		if age >= r.dynamicLifetime || age < -r.skew {
			static = true // a screenshot or a stale display
		}
	}
	if !static {
		return s.Verified, nil
	}
	if s.Remote && !code.Business {
		return 0, ErrRemoteStatic
	}
	return ClassD, nil
}
