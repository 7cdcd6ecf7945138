package bench

import "errors"

// The raw load client's MQTT 3.1.1 codec: just the packets a benchmark
// terminal sends (CONNECT, SUBSCRIBE, PUBLISH at QoS 1, PUBACK, DISCONNECT)
// and the ones it reads (CONNACK, SUBACK, PUBLISH, PUBACK, PINGRESP). The
// encoders append to a caller's buffer and the decoder returns views into
// its input, so the hot path allocates nothing.

// MQTT 3.1.1 control packet types (the high nibble of the first byte).
const (
	pktConnect    = 1
	pktConnack    = 2
	pktPublish    = 3
	pktPuback     = 4
	pktSubscribe  = 8
	pktSuback     = 9
	pktPingresp   = 13
	pktDisconnect = 14
)

// mqttPacketMax bounds one packet the raw client reads (the deployed broker
// allows 8192 bytes; a larger packet is a protocol error, not a reason to
// grow the read buffer).
const mqttPacketMax = 64 << 10

// Decoder errors.
var (
	errMQTTLength   = errors.New("mqtt: malformed remaining length")
	errMQTTTooLarge = errors.New("mqtt: packet larger than the read bound")
	errMQTTShape    = errors.New("mqtt: malformed packet body")
	errMQTTType     = errors.New("mqtt: unexpected packet type or flags")
)

// packet is one decoded packet. topic and payload alias the decoder's input.
type packet struct {
	typ     byte // high nibble of the first byte
	flags   byte // low nibble of the first byte
	id      uint16
	code    byte // CONNACK return code, SUBACK first return code
	topic   []byte
	payload []byte
}

// qos is a PUBLISH packet's QoS level.
func (p *packet) qos() byte { return p.flags >> 1 & 3 }

// parsePacket decodes the first packet of b. It returns n == 0 and no error
// when b holds only a prefix of a packet (read more and call again), and an
// error when b cannot start a valid packet of a type the client reads.
// It never reads past b[:n].
func parsePacket(b []byte) (p packet, n int, err error) {
	if len(b) < 2 {
		return p, 0, nil
	}
	p.typ, p.flags = b[0]>>4, b[0]&0x0f
	// Remaining length: 1 to 4 bytes of 7 bits, least significant first.
	rl, mul, i := 0, 1, 1
	for {
		if i >= len(b) {
			return packet{}, 0, nil
		}
		d := b[i]
		rl += int(d&0x7f) * mul
		i++
		if d&0x80 == 0 {
			break
		}
		if i == 5 {
			return packet{}, 0, errMQTTLength
		}
		mul *= 128
	}
	if rl > mqttPacketMax {
		return packet{}, 0, errMQTTTooLarge
	}
	if len(b)-i < rl {
		return packet{}, 0, nil
	}
	body := b[i : i+rl]
	n = i + rl
	switch p.typ {
	case pktConnack:
		if p.flags != 0 || rl != 2 || body[0]&0xfe != 0 {
			return packet{}, 0, errMQTTShape
		}
		p.code = body[1]
	case pktSuback:
		if p.flags != 0 || rl < 3 {
			return packet{}, 0, errMQTTShape
		}
		p.id = uint16(body[0])<<8 | uint16(body[1])
		p.code = body[2]
		p.payload = body[2:rl:rl] // one return code per filter
	case pktPuback:
		if p.flags != 0 || rl != 2 {
			return packet{}, 0, errMQTTShape
		}
		p.id = uint16(body[0])<<8 | uint16(body[1])
	case pktPingresp:
		if p.flags != 0 || rl != 0 {
			return packet{}, 0, errMQTTShape
		}
	case pktPublish:
		q := p.qos()
		if q == 3 || (q == 0 && p.flags&0x08 != 0) { // QoS 3; DUP on QoS 0
			return packet{}, 0, errMQTTType
		}
		if rl < 2 {
			return packet{}, 0, errMQTTShape
		}
		tl := int(body[0])<<8 | int(body[1])
		rest := body[2:]
		if tl == 0 || tl > len(rest) {
			return packet{}, 0, errMQTTShape
		}
		p.topic, rest = rest[:tl:tl], rest[tl:]
		if q > 0 {
			if len(rest) < 2 {
				return packet{}, 0, errMQTTShape
			}
			p.id = uint16(rest[0])<<8 | uint16(rest[1])
			if p.id == 0 {
				return packet{}, 0, errMQTTShape
			}
			rest = rest[2:]
		}
		p.payload = rest[:len(rest):len(rest)]
	default:
		return packet{}, 0, errMQTTType
	}
	return p, n, nil
}

// appendLength appends an MQTT remaining length (n < 268,435,456).
func appendLength(dst []byte, n int) []byte {
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

// appendConnect appends a CONNECT with a clean session, the keep-alive in
// seconds (0 = off), and user and password when user is not empty.
func appendConnect(dst []byte, clientID, user, password string, keepAlive uint16) []byte {
	flags := byte(0x02) // clean session
	rl := 10 + 2 + len(clientID)
	if user != "" {
		flags |= 0x80 | 0x40
		rl += 2 + len(user) + 2 + len(password)
	}
	dst = append(dst, pktConnect<<4)
	dst = appendLength(dst, rl)
	dst = mqttString(dst, "MQTT")
	dst = append(dst, 4, flags, byte(keepAlive>>8), byte(keepAlive))
	dst = mqttString(dst, clientID)
	if user != "" {
		dst = mqttString(dst, user)
		dst = mqttString(dst, password)
	}
	return dst
}

// appendSubscribe appends a SUBSCRIBE of every filter at QoS 1.
func appendSubscribe(dst []byte, id uint16, filters ...string) []byte {
	rl := 2
	for _, f := range filters {
		rl += 2 + len(f) + 1
	}
	dst = append(dst, pktSubscribe<<4|0x02)
	dst = appendLength(dst, rl)
	dst = append(dst, byte(id>>8), byte(id))
	for _, f := range filters {
		dst = append(mqttString(dst, f), 1)
	}
	return dst
}

// appendPublishHeader appends a QoS 1 PUBLISH up to its payload: the caller
// appends (or writes) exactly payloadLen bytes next.
func appendPublishHeader(dst []byte, topic string, id uint16, payloadLen int) []byte {
	dst = append(dst, pktPublish<<4|0x02)
	dst = appendLength(dst, 2+len(topic)+2+payloadLen)
	dst = mqttString(dst, topic)
	return append(dst, byte(id>>8), byte(id))
}

// appendPuback appends a PUBACK for packet id.
func appendPuback(dst []byte, id uint16) []byte {
	return append(dst, pktPuback<<4, 2, byte(id>>8), byte(id))
}

// disconnectPacket is MQTT DISCONNECT.
var disconnectPacket = []byte{pktDisconnect << 4, 0}
