// Package mqttwire owns the project's MQTT 3.1.1 wire codec: the packets a
// lean client sends (CONNECT, SUBSCRIBE, PUBLISH at QoS 1, PUBACK, PINGREQ,
// DISCONNECT) and the ones it reads (CONNACK, SUBACK, PUBLISH at QoS 0 or
// 1, PUBACK, PINGRESP). The gateway's ingress and the emulator's load
// terminals both speak through it. Encoders append to a caller's buffer and
// the decoder returns views into its input, so the hot path allocates
// nothing. It does no I/O.
package mqttwire

import "errors"

// MQTT 3.1.1 control packet types (the high nibble of the first byte).
const (
	TypeConnect    = 1
	TypeConnack    = 2
	TypePublish    = 3
	TypePuback     = 4
	TypeSubscribe  = 8
	TypeSuback     = 9
	TypePingreq    = 12
	TypePingresp   = 13
	TypeDisconnect = 14
)

// PacketMax bounds one packet a reader accepts (the deployed broker allows
// 8192 bytes; a larger packet is a protocol error, not a reason to grow a
// read buffer).
const PacketMax = 64 << 10

// Decoder errors.
var (
	ErrLength   = errors.New("mqtt: malformed remaining length")
	ErrTooLarge = errors.New("mqtt: packet larger than the read bound")
	ErrShape    = errors.New("mqtt: malformed packet body")
	ErrType     = errors.New("mqtt: unexpected packet type or flags")
)

// Packet is one decoded packet. Topic and Payload alias the decoder's input.
type Packet struct {
	Type    byte // high nibble of the first byte
	Flags   byte // low nibble of the first byte
	ID      uint16
	Code    byte // CONNACK return code, SUBACK first return code
	Topic   []byte
	Payload []byte // PUBLISH payload; SUBACK return codes
}

// QoS is a PUBLISH packet's QoS level.
func (p *Packet) QoS() byte { return p.Flags >> 1 & 3 }

// Retain reports a PUBLISH packet's retain flag.
func (p *Packet) Retain() bool { return p.Flags&1 != 0 }

// Parse decodes the first packet of b. It returns n == 0 and no error
// when b holds only a prefix of a packet (read more and call again), and an
// error when b cannot start a valid packet of a type the client reads.
// It never reads past b[:n].
func Parse(b []byte) (p Packet, n int, err error) {
	if len(b) < 2 {
		return p, 0, nil
	}
	p.Type, p.Flags = b[0]>>4, b[0]&0x0f
	// Remaining length: 1 to 4 bytes of 7 bits, least significant first.
	rl, mul, i := 0, 1, 1
	for {
		if i >= len(b) {
			return Packet{}, 0, nil
		}
		d := b[i]
		rl += int(d&0x7f) * mul
		i++
		if d&0x80 == 0 {
			break
		}
		if i == 5 {
			return Packet{}, 0, ErrLength
		}
		mul *= 128
	}
	if rl > PacketMax {
		return Packet{}, 0, ErrTooLarge
	}
	if len(b)-i < rl {
		return Packet{}, 0, nil
	}
	body := b[i : i+rl]
	n = i + rl
	switch p.Type {
	case TypeConnack:
		if p.Flags != 0 || rl != 2 || body[0]&0xfe != 0 {
			return Packet{}, 0, ErrShape
		}
		p.Code = body[1]
	case TypeSuback:
		if p.Flags != 0 || rl < 3 {
			return Packet{}, 0, ErrShape
		}
		p.ID = uint16(body[0])<<8 | uint16(body[1])
		p.Code = body[2]
		p.Payload = body[2:rl:rl] // one return code per filter
	case TypePuback:
		if p.Flags != 0 || rl != 2 {
			return Packet{}, 0, ErrShape
		}
		p.ID = uint16(body[0])<<8 | uint16(body[1])
	case TypePingresp:
		if p.Flags != 0 || rl != 0 {
			return Packet{}, 0, ErrShape
		}
	case TypePublish:
		q := p.QoS()
		if q == 3 || (q == 0 && p.Flags&0x08 != 0) { // QoS 3; DUP on QoS 0
			return Packet{}, 0, ErrType
		}
		if rl < 2 {
			return Packet{}, 0, ErrShape
		}
		tl := int(body[0])<<8 | int(body[1])
		rest := body[2:]
		if tl == 0 || tl > len(rest) {
			return Packet{}, 0, ErrShape
		}
		p.Topic, rest = rest[:tl:tl], rest[tl:]
		if q > 0 {
			if len(rest) < 2 {
				return Packet{}, 0, ErrShape
			}
			p.ID = uint16(rest[0])<<8 | uint16(rest[1])
			if p.ID == 0 {
				return Packet{}, 0, ErrShape
			}
			rest = rest[2:]
		}
		p.Payload = rest[:len(rest):len(rest)]
	default:
		return Packet{}, 0, ErrType
	}
	return p, n, nil
}

// AppendLength appends an MQTT remaining length (n < 268,435,456).
func AppendLength(dst []byte, n int) []byte {
	for {
		d := byte(n % 128)
		n /= 128
		if n > 0 {
			d |= 0x80
		}
		dst = append(dst, d)
		if n == 0 {
			return dst
		}
	}
}

// AppendConnect appends a CONNECT with a clean session, the keep-alive in
// seconds (0 = off), and user and password when user is not empty.
func AppendConnect(dst []byte, clientID, user, password string, keepAlive uint16) []byte {
	flags := byte(0x02) // clean session
	rl := 10 + 2 + len(clientID)
	if user != "" {
		flags |= 0x80 | 0x40
		rl += 2 + len(user) + 2 + len(password)
	}
	dst = append(dst, TypeConnect<<4)
	dst = AppendLength(dst, rl)
	dst = AppendString(dst, "MQTT")
	dst = append(dst, 4, flags, byte(keepAlive>>8), byte(keepAlive))
	dst = AppendString(dst, clientID)
	if user != "" {
		dst = AppendString(dst, user)
		dst = AppendString(dst, password)
	}
	return dst
}

// AppendSubscribe appends a SUBSCRIBE of every filter at QoS 1.
func AppendSubscribe(dst []byte, id uint16, filters ...string) []byte {
	rl := 2
	for _, f := range filters {
		rl += 2 + len(f) + 1
	}
	dst = append(dst, TypeSubscribe<<4|0x02)
	dst = AppendLength(dst, rl)
	dst = append(dst, byte(id>>8), byte(id))
	for _, f := range filters {
		dst = append(AppendString(dst, f), 1)
	}
	return dst
}

// AppendPublishHeader appends a QoS 1 PUBLISH up to its payload: the caller
// appends (or writes) exactly payloadLen bytes next.
func AppendPublishHeader(dst []byte, topic string, id uint16, retain bool, payloadLen int) []byte {
	h := byte(TypePublish<<4 | 0x02)
	if retain {
		h |= 0x01
	}
	dst = append(dst, h)
	dst = AppendLength(dst, 2+len(topic)+2+payloadLen)
	dst = AppendString(dst, topic)
	return append(dst, byte(id>>8), byte(id))
}

// AppendPuback appends a PUBACK for packet id.
func AppendPuback(dst []byte, id uint16) []byte {
	return append(dst, TypePuback<<4, 2, byte(id>>8), byte(id))
}

// AppendString appends an MQTT UTF-8 string (2-byte length prefix).
func AppendString(b []byte, s string) []byte {
	return append(append(b, byte(len(s)>>8), byte(len(s))), s...)
}

// Frame frames body under the fixed-header byte h.
func Frame(h byte, body []byte) []byte {
	return append(AppendLength([]byte{h}, len(body)), body...)
}

// AppendPingreq appends a PINGREQ.
func AppendPingreq(dst []byte) []byte { return append(dst, TypePingreq<<4, 0) }

// AppendDisconnect appends a DISCONNECT.
func AppendDisconnect(dst []byte) []byte { return append(dst, TypeDisconnect<<4, 0) }
