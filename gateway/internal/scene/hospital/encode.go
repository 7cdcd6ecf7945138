package hospital

// AppendBinary appends the deposit (version 1, little endian): id, account
// (u8 length + bytes), state u8, seq u32, opened-at i64, activity i64,
// leg count u8 and per leg: txn u64, amount i64, captured i64, released u8;
// order count u16 and per order, oldest first: id (u8 length + bytes),
// amount i64.
func (d *Deposit) AppendBinary(dst []byte) []byte {
	dst = append(dst, stateVersion)
	dst = appendStr(dst, d.ID)
	dst = appendStr(dst, d.Account)
	dst = append(dst, byte(d.State))
	dst = appendU32(dst, d.Seq)
	dst = appendU64(dst, uint64(d.OpenedAt))
	dst = appendU64(dst, uint64(d.Activity))
	dst = append(dst, byte(len(d.Legs)))
	for _, l := range d.Legs {
		dst = appendU64(dst, l.Txn)
		dst = appendU64(dst, uint64(l.Amount))
		dst = appendU64(dst, uint64(l.Captured))
		rel := byte(0)
		if l.Released {
			rel = 1
		}
		dst = append(dst, rel)
	}
	dst = append(dst, byte(len(d.orders)), byte(len(d.orders)>>8))
	for i := range d.orders {
		o := d.orders[(d.ordHead+i)%len(d.orders)]
		dst = appendStr(dst, o.id)
		dst = appendU64(dst, uint64(o.amount))
	}
	return dst
}

// DecodeBinary replaces d with the deposit in b, checking its invariants
// (state, legs within LegsMax of 32 and captured <= amount, unique hold ids
// and order ids, orders within 4096); on error d is unchanged.
func (d *Deposit) DecodeBinary(b []byte) error {
	r := *newReader(b)
	r.Version("deposit")
	var n Deposit
	n.ID, n.Account = r.Str("id"), r.Str("account")
	n.State = State(r.U8())
	n.Seq = r.U32()
	n.OpenedAt, n.Activity = r.I64(), r.I64()
	nl := int(r.U8())
	if r.Err == nil && (n.State > StateExpired || nl > legsMaxLimit ||
		(n.State == StateNone) != (n.ID == "" && n.Account == "" && nl == 0 && n.Seq == 0 && n.OpenedAt == 0 && n.Activity == 0) ||
		(n.State != StateNone && (!validID(n.ID) || !validID(n.Account)))) {
		r.Fail("deposit header out of range")
	}
	var total int64
	for i := 0; i < nl && r.Err == nil; i++ {
		l := HoldLeg{Txn: r.U64(), Amount: r.Fen("leg amount"), Captured: r.Fen("leg captured")}
		rel := r.U8()
		if r.Err != nil {
			break
		}
		if l.Amount == 0 || l.Captured > l.Amount || rel > 1 || n.leg(l.Txn) != nil || l.Amount > maxFen-total {
			r.Fail("leg %d out of range", i)
			break
		}
		total += l.Amount
		l.Released = rel == 1
		n.Legs = append(n.Legs, l)
	}
	no := int(r.U8()) | int(r.U8())<<8
	if r.Err == nil && no > ordersLimit {
		r.Fail("%d orders, at most %d", no, ordersLimit)
	}
	for i := 0; i < no && r.Err == nil; i++ {
		o := order{id: r.Str("order id"), amount: r.Fen("order amount")}
		if r.Err != nil {
			break
		}
		if _, dup := n.findOrder(o.id); dup || !validID(o.id) || o.amount == 0 {
			r.Fail("order %d out of range", i)
			break
		}
		n.orders = append(n.orders, o)
	}
	if err := r.Done(); err != nil {
		return err
	}
	*d = n
	return nil
}
