package market

import "time"

// Customer is the PBoC QR limit state of one customer (account): the
// amounts paid today by class. The caller owns it (in the account's shard)
// and mutates it only through Check/Apply/Reverse, in the same atomic step
// as the debit, so that the sum of small payments can never pass a limit.
type Customer struct {
	// Day is the Asia/Shanghai day (days since 1970-01-01) of Spent.
	Day int32
	// Spent is the amount paid on Day by class, fen; index 1..4 = A..D.
	Spent [5]int64
	// AgreedA is the class A daily limit agreed with this customer, fen;
	// 0 means no agreement and the config's LimitAFen applies.
	AgreedA int64
}

// spent is the class total on day, zero if the counters are of another day.
func (c *Customer) spent(class Class, day int32) int64 {
	if c.Day != day {
		return 0
	}
	return c.Spent[class]
}

func (r *Rules) limit(c *Customer, class Class) int64 {
	if class == ClassA && c.AgreedA > 0 {
		return c.AgreedA
	}
	return r.limits[class]
}

// Check decides whether a payment of amount in class may go through now:
// nil, ErrInvalidAmount (not positive, or the day's sum would overflow),
// ErrBadClass, or ErrDailyLimit. Counting is per class: a class X payment
// is checked against the class X limit with the customer's class X total
// for the Asia/Shanghai day, across every code and terminal. Check does not
// change c.
func (r *Rules) Check(c *Customer, class Class, amount int64, now time.Time) error {
	if class < ClassA || class > ClassD {
		return ErrBadClass
	}
	if amount <= 0 {
		return ErrInvalidAmount
	}
	s := c.spent(class, DayOf(now))
	if s > maxFen-amount {
		return ErrInvalidAmount
	}
	if s+amount > r.limit(c, class) {
		return ErrDailyLimit
	}
	return nil
}

const maxFen = int64(^uint64(0) >> 1)

// Apply adds an approved payment to the day's counter, rolling the counters
// to today first. It re-checks overflow (never wraps) but not the limit:
// policy is decided by Check, so replaying Apply after a limit change is
// still exact.
func (r *Rules) Apply(c *Customer, class Class, amount int64, now time.Time) error {
	if class < ClassA || class > ClassD {
		return ErrBadClass
	}
	day := DayOf(now)
	s := c.spent(class, day)
	if amount <= 0 || s > maxFen-amount {
		return ErrInvalidAmount
	}
	if c.Day != day {
		c.Day, c.Spent = day, [5]int64{}
	}
	c.Spent[class] = s + amount
	return nil
}

// Reverse takes a reversed or refunded amount off the counter when the
// original was paid on the counter's day and that day is today; a refund
// on a later day leaves the (already rolled) counters alone. The counter
// never goes below zero.
func (r *Rules) Reverse(c *Customer, class Class, amount int64, paidAt, now time.Time) {
	if class < ClassA || class > ClassD || amount <= 0 {
		return
	}
	day := DayOf(now)
	if DayOf(paidAt) != day || c.Day != day {
		return
	}
	c.Spent[class] -= min(amount, c.Spent[class])
}

// customerSize is the encoded size of a Customer.
const customerSize = 1 + 4 + 4*8 + 8

// AppendBinary appends version, day i32, spent A..D i64, agreed A i64.
func (c *Customer) AppendBinary(dst []byte) []byte {
	dst = append(dst, stateVersion)
	dst = appendU32(dst, uint32(c.Day))
	for k := ClassA; k <= ClassD; k++ {
		dst = appendU64(dst, uint64(c.Spent[k]))
	}
	return appendU64(dst, uint64(c.AgreedA))
}

// DecodeBinary replaces c with the state in b; on error c is unchanged.
func (c *Customer) DecodeBinary(b []byte) error {
	r := *newReader(b)
	r.Version("customer")
	var n Customer
	n.Day = int32(r.U32())
	for k := ClassA; k <= ClassD; k++ {
		n.Spent[k] = r.Fen("spent")
	}
	n.AgreedA = r.Fen("agreed A")
	if err := r.Done(); err != nil {
		return err
	}
	*c = n
	return nil
}
