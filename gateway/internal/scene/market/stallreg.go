package market

// The lifecycle of merchant-presented stall codes (PBoC notice 259): the
// operator registers a code for a stall (static or dynamic, personal or
// business; a dynamic code with its amount and expiry), may revoke it, and
// a wallet pays through it. Authorize decides a payment through a code
// before any effect; the caller (the gateway) then runs the debit in the
// payer's shard step and, on approval, MarkPaid uses a dynamic code up.
//
// The registry is gateway-level reference data, not a shard's: the caller
// serializes access, journals each change (Register, Revoke, MarkPaid)
// with its time, and replays them in journal order. Every method is a
// deterministic function of the registry and its arguments, so replay
// rebuilds the same registry; a snapshot carries AppendBinary.
//
// Bounds: at most StallCodesMax stalls and as many codes. A registration
// that finds the registry full purges the dead codes (revoked, or dynamic
// and past their expiry) when that makes room, else it is refused with
// ErrRegistryFull and changes nothing.
// Purging depends only on the registry and the registration's time, never
// on which dynamic codes were paid, so the order in which payments and
// registrations from different goroutines reach the journal cannot change
// it.

import (
	"crypto/sha256"
	"time"

	"scenepay/terminals"
)

// StallCodeTTLMax is the longest life of a dynamic stall code: a code
// generated for one sale that is good for hours is not dynamic.
const StallCodeTTLMax = time.Hour

// Errors of the stall code lifecycle.
var (
	ErrStallCodeRevoked = &Decline{terminals.CodeStallCodeRevoked, "stall code revoked"}
	ErrStallCodeExists  = &Decline{terminals.CodeIDConflict, "stall code id already registered"}
	ErrStallCodeAmount  = &Decline{terminals.CodeInvalidAmount, "amount differs from the dynamic code's amount"}
	ErrStallCodeShape   = &Decline{terminals.CodeMalformed, "a dynamic code needs an amount of 1..1000000000 fen and an expiry within an hour of now; a static code has neither"}
)

// Register adds a new code of a known stall at now: a static code with no
// amount or expiry, or a dynamic one with its amount and an expiry after
// now and at most StallCodeTTLMax away. ShownAt becomes now; Revoked and
// PaidBy must be empty. A personal code for a business stall is refused
// (notice 259), as is an id already registered (ErrStallCodeExists).
func (g *Registry) Register(c StallCode, now time.Time) error {
	ms := now.UnixMilli()
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
	if c.Dynamic {
		if c.Amount <= 0 || c.Amount > terminals.MaxAmount || c.Expires <= ms || c.Expires-ms > StallCodeTTLMax.Milliseconds() {
			return ErrStallCodeShape
		}
	} else if c.Amount != 0 || c.Expires != 0 {
		return ErrStallCodeShape
	}
	if c.Revoked != 0 || c.PaidBy != "" {
		return ErrStallCodeShape
	}
	if _, ok := g.codes[c.ID]; ok {
		return ErrStallCodeExists
	}
	if len(g.codes) >= g.max {
		// Purge only when it makes room: a refused registration is not
		// journaled, so it must leave the registry as it found it.
		dead := 0
		for _, d := range g.codes {
			if d.dead(ms) {
				dead++
			}
		}
		if len(g.codes)-dead >= g.max {
			return ErrRegistryFull
		}
		g.Purge(now)
	}
	c.ShownAt = ms
	g.codes[c.ID] = c
	return nil
}

// RestoreStall puts a stall's previous record back after a refused
// registration: the record old if had, else no stall id.
func (g *Registry) RestoreStall(id string, old Stall, had bool) {
	if had {
		g.stalls[id] = old
	} else {
		delete(g.stalls, id)
	}
}

// dead reports whether c can collect nothing ever again at ms.
func (c *StallCode) dead(ms int64) bool {
	return c.Revoked != 0 || (c.Dynamic && ms >= c.Expires)
}

// Purge forgets the codes that can collect nothing any more at now
// (revoked, or dynamic and expired) and returns how many it forgot.
func (g *Registry) Purge(now time.Time) int {
	ms, n := now.UnixMilli(), 0
	for id, c := range g.codes {
		if c.dead(ms) {
			delete(g.codes, id)
			n++
		}
	}
	return n
}

// Revoke marks code id revoked at now and returns it; revoking a revoked
// code changes nothing and reports changed false.
func (g *Registry) Revoke(id string, now time.Time) (c StallCode, changed bool, err error) {
	c, ok := g.codes[id]
	if !ok {
		return c, false, ErrUnknownStallCode
	}
	if c.Revoked != 0 {
		return c, false, nil
	}
	c.Revoked = now.UnixMilli()
	g.codes[id] = c
	return c, true, nil
}

// Authorize decides a payment of amount through code id at now, before
// any effect, in this order: unknown code (UNKNOWN_INSTRUMENT), revoked
// (STALL_CODE_REVOKED), a dynamic code already paid (PAYCODE_REUSED) or
// expired (PAYCODE_EXPIRED), the amount (a static code: 1..MaxAmount; a
// dynamic one: its own amount, or 0 to take it), then the PBoC class
// (ClassFor with the code's ShownAt: a static personal code refuses remote
// collection, QR_REMOTE_REFUSED). It returns the code, the class whose
// daily limit applies and the amount to debit; the caller checks that
// limit in the step that debits. Authorize changes nothing.
func (g *Registry) Authorize(r *Rules, id string, amount int64, s Scan, now time.Time) (StallCode, Class, int64, error) {
	c, ok := g.codes[id]
	switch {
	case !ok:
		return c, 0, 0, ErrUnknownStallCode
	case c.Revoked != 0:
		return c, 0, 0, ErrStallCodeRevoked
	case c.Dynamic && c.PaidBy != "":
		return c, 0, 0, ErrCodeReused
	case c.Dynamic && now.UnixMilli() >= c.Expires:
		return c, 0, 0, ErrCodeExpired
	}
	if c.Dynamic {
		if amount != 0 && amount != c.Amount {
			return c, 0, 0, ErrStallCodeAmount
		}
		amount = c.Amount
	} else if amount <= 0 || amount > terminals.MaxAmount {
		return c, 0, 0, ErrInvalidAmount
	}
	s.ShownAt = time.UnixMilli(c.ShownAt)
	class, err := r.ClassFor(&c, s, now)
	if err != nil {
		return c, 0, 0, err
	}
	return c, class, amount, nil
}

// MarkPaid uses dynamic code id up for payment payID. It is a no-op for a
// static code, an already used one (the first payment stands) and a code
// no longer registered (purged after its expiry while the payment was in
// flight): replay calls it for every approved payment in journal order.
func (g *Registry) MarkPaid(id, payID string) {
	c, ok := g.codes[id]
	if !ok || !c.Dynamic || c.PaidBy != "" || !validID(payID) {
		return
	}
	c.PaidBy = payID
	g.codes[id] = c
}

// Len is the number of registered codes.
func (g *Registry) Len() int { return len(g.codes) }

// Max is the registry's bound on codes (and on stalls).
func (g *Registry) Max() int { return g.max }

// Codes lists the codes of the stalls of merchant, by id, after the id
// after, at most limit of them; more reports whether more follow.
func (g *Registry) Codes(merchant, after string, limit int) (list []StallCode, more bool) {
	var ids []string
	for _, c := range g.codes {
		if c.ID <= after {
			continue
		}
		if s, ok := g.stalls[c.Stall]; ok && s.Merchant == merchant {
			ids = append(ids, c.ID)
		}
	}
	sortIDs(ids)
	if limit >= 0 && len(ids) > limit {
		ids, more = ids[:limit], true
	}
	list = make([]StallCode, len(ids))
	for i, id := range ids {
		list[i] = g.codes[id]
	}
	return list, more
}

// sortIDs sorts ids in place (heapsort: n log n, no allocation, and no
// import beyond what the pure scene packages may use).
func sortIDs(a []string) {
	sift := func(i, n int) {
		for {
			c := 2*i + 1
			if c >= n {
				return
			}
			if c+1 < n && a[c+1] > a[c] {
				c++
			}
			if a[i] >= a[c] {
				return
			}
			a[i], a[c] = a[c], a[i]
			i = c
		}
	}
	for i := len(a)/2 - 1; i >= 0; i-- {
		sift(i, len(a))
	}
	for end := len(a) - 1; end > 0; end-- {
		a[0], a[end] = a[end], a[0]
		sift(0, end)
	}
}

// StallTag is a stall code's identity in a shard's used-code set
// (UsedCodes): a dynamic stall code paid in a shard is marked there like a
// consumer code, under a tag no consumer code can have (a different hash
// domain than the codes' MAC).
func StallTag(id string) [TagLen]byte {
	sum := sha256.Sum256([]byte("scenepay/stallcode/v1|" + id))
	var t [TagLen]byte
	copy(t[:], sum[:])
	return t
}

// ExpirySeconds is the Unix second from which dynamic code c collects
// nothing (rounded up).
func (c *StallCode) ExpirySeconds() int64 { return (c.Expires + 999) / 1000 }

// UsedUntil is the Unix second until which a shard's used set must keep
// the tag of a payment through dynamic code c in the payer's class: such
// a payment happens only inside the code's freshness window (later scans
// are class D, with no tag), so the end of that window or the code's
// expiry, whichever comes first (rounded up). Keeping the tag no longer
// than a consumer code's keeps the used set's FIFO flowing.
func (r *Rules) UsedUntil(c *StallCode) int64 {
	return min((c.ShownAt+r.dynamicLifetime*1000+999)/1000, c.ExpirySeconds())
}

const (
	stallFlagDynamic  = 1 << 0
	stallFlagBusiness = 1 << 1
)

// AppendBinary appends one code: id, stall (u8 length + bytes), flags u8
// (bit 0 dynamic, bit 1 business), amount, shown-at, expires, revoked
// (i64 each), paid-by (u8 length + bytes).
func (c *StallCode) AppendBinary(dst []byte) []byte {
	dst = appendStr(dst, c.ID)
	dst = appendStr(dst, c.Stall)
	var f byte
	if c.Dynamic {
		f |= stallFlagDynamic
	}
	if c.Business {
		f |= stallFlagBusiness
	}
	dst = append(dst, f)
	for _, v := range [...]int64{c.Amount, c.ShownAt, c.Expires, c.Revoked} {
		dst = appendU64(dst, uint64(v))
	}
	return appendStr(dst, c.PaidBy)
}

// readCode reads one code as AppendBinary wrote it and checks its shape.
func readCode(r *reader) StallCode {
	var c StallCode
	c.ID, c.Stall = r.Str("stall code id"), r.Str("stall id")
	f := r.U8()
	c.Dynamic, c.Business = f&stallFlagDynamic != 0, f&stallFlagBusiness != 0
	c.Amount, c.ShownAt, c.Expires, c.Revoked = r.I64(), r.I64(), r.I64(), r.I64()
	c.PaidBy = r.Str("paid by")
	if r.Err != nil {
		return c
	}
	switch {
	case f&^(stallFlagDynamic|stallFlagBusiness) != 0:
		r.Fail("stall code %q: unknown flags %02x", c.ID, f)
	case !validID(c.ID) || !validID(c.Stall):
		r.Fail("stall code %q: bad id or stall", c.ID)
	case c.ShownAt < 0 || c.Revoked < 0:
		r.Fail("stall code %q: negative time", c.ID)
	case c.Dynamic && c.Amount == 0 && c.Expires == 0 && c.PaidBy == "":
		// AddCode's dynamic code: reference data of a code the terminal
		// generates per sale, without a registered amount or expiry
		// (Authorize finds it expired).
	case c.Dynamic && (c.Amount <= 0 || c.Amount > terminals.MaxAmount || c.Expires <= c.ShownAt || c.Expires-c.ShownAt > StallCodeTTLMax.Milliseconds()):
		r.Fail("stall code %q: dynamic code without a valid amount and expiry", c.ID)
	case !c.Dynamic && (c.Amount != 0 || c.Expires != 0 || c.PaidBy != ""):
		r.Fail("stall code %q: static code with an amount, expiry or payment", c.ID)
	}
	return c
}

// DecodeStallCode decodes one code written by AppendBinary (with nothing
// after it).
func DecodeStallCode(b []byte) (StallCode, error) {
	r := newReader(b)
	c := readCode(r)
	if err := r.Done(); err != nil {
		return StallCode{}, err
	}
	return c, nil
}

// AppendBinary appends the registry: version, bound u32, stall count u32,
// then each stall by id (id, merchant, u8 business), code count u32, then
// each code by id (StallCode.AppendBinary).
func (g *Registry) AppendBinary(dst []byte) []byte {
	dst = append(dst, stateVersion)
	dst = appendU32(dst, uint32(g.max))
	ids := make([]string, 0, max(len(g.stalls), len(g.codes)))
	for id := range g.stalls {
		ids = append(ids, id)
	}
	sortIDs(ids)
	dst = appendU32(dst, uint32(len(ids)))
	for _, id := range ids {
		s := g.stalls[id]
		dst = appendStr(dst, s.ID)
		dst = appendStr(dst, s.Merchant)
		b := byte(0)
		if s.Business {
			b = 1
		}
		dst = append(dst, b)
	}
	ids = ids[:0]
	for id := range g.codes {
		ids = append(ids, id)
	}
	sortIDs(ids)
	dst = appendU32(dst, uint32(len(ids)))
	for _, id := range ids {
		c := g.codes[id]
		dst = c.AppendBinary(dst)
	}
	return dst
}

// DecodeBinary replaces g with the registry in b, checking bounds, sorted
// unique ids, every code's shape and that each code names a known stall;
// on error g is unchanged.
func (g *Registry) DecodeBinary(b []byte) error {
	r := newReader(b)
	r.Version("stall registry")
	bound, ns := int(r.U32()), int(r.U32())
	// The smallest stall is 4 bytes: refuse counts the input cannot hold.
	if r.Err == nil && (bound < 1 || bound > stallCodesMaxLimit || ns > bound || ns > (len(b)-r.Off)/4) {
		r.Fail("bound %d, %d stalls out of range", bound, ns)
	}
	n := &Registry{max: bound, stalls: map[string]Stall{}, codes: map[string]StallCode{}}
	prev := ""
	for i := 0; i < ns && r.Err == nil; i++ {
		s := Stall{ID: r.Str("stall id"), Merchant: r.Str("merchant")}
		bz := r.U8()
		s.Business = bz == 1
		if r.Err == nil && (!validID(s.ID) || !validID(s.Merchant) || bz > 1 || s.ID <= prev) {
			r.Fail("stall %d out of range or order", i)
		}
		prev = s.ID
		n.stalls[s.ID] = s
	}
	nc := int(r.U32())
	// The smallest code is 2 + 2 + 1 + 32 + 1 bytes.
	if r.Err == nil && (nc > bound || nc > (len(b)-r.Off)/38) {
		r.Fail("%d codes out of range", nc)
	}
	prev = ""
	for i := 0; i < nc && r.Err == nil; i++ {
		c := readCode(r)
		if r.Err != nil {
			break
		}
		// A stall marked business after it registered personal codes keeps
		// them (until revoked): that is not corruption.
		if _, ok := n.stalls[c.Stall]; !ok {
			r.Fail("code %q names unknown stall %q", c.ID, c.Stall)
		} else if c.ID <= prev {
			r.Fail("code %d out of order", i)
		}
		prev = c.ID
		n.codes[c.ID] = c
	}
	if err := r.Done(); err != nil {
		return err
	}
	*g = *n
	return nil
}
