package mqttwire

import (
	"bytes"
	"testing"
)

func TestCodecEncodersMatchSpecLayout(t *testing.T) {
	// CONNECT: the scale probe's hand-built packet is the reference layout.
	var body []byte
	body = AppendString(body, "MQTT")
	body = append(body, 4, 0x02, 0, 30)
	body = AppendString(body, "T-1")
	if got, want := AppendConnect(nil, "T-1", "", "", 30), Frame(0x10, body); !bytes.Equal(got, want) {
		t.Errorf("CONNECT\n got % x\nwant % x", got, want)
	}
	body = body[:0]
	body = AppendString(body, "MQTT")
	body = append(body, 4, 0xc2, 0, 0)
	body = AppendString(body, "c")
	body = AppendString(body, "user")
	body = AppendString(body, "pw")
	if got, want := AppendConnect(nil, "c", "user", "pw", 0), Frame(0x10, body); !bytes.Equal(got, want) {
		t.Errorf("CONNECT with login\n got % x\nwant % x", got, want)
	}
	body = []byte{0x12, 0x34}
	body = append(AppendString(body, "a/b"), 1)
	body = append(AppendString(body, "c"), 1)
	if got, want := AppendSubscribe(nil, 0x1234, "a/b", "c"), Frame(0x82, body); !bytes.Equal(got, want) {
		t.Errorf("SUBSCRIBE\n got % x\nwant % x", got, want)
	}
	if got := AppendPuback(nil, 0xbeef); !bytes.Equal(got, []byte{0x40, 2, 0xbe, 0xef}) {
		t.Errorf("PUBACK % x", got)
	}
	for _, n := range []int{0, 127, 128, 16383, 16384, 2097151, 2097152} {
		got := AppendLength(nil, n)
		want := Frame(0, make([]byte, n))[1 : len(got)+1]
		if !bytes.Equal(got, want) {
			t.Errorf("length %d: % x, want % x", n, got, want)
		}
	}
}

func TestParsePublishRoundTripAndPrefixes(t *testing.T) {
	payload := bytes.Repeat([]byte("x"), 300) // two-byte remaining length
	pkt := AppendPublishHeader(nil, "scp/v1/t/T-1/resp", 77, false, len(payload))
	pkt = append(pkt, payload...)
	pkt = append(pkt, AppendPuback(nil, 9)...) // a second packet behind it
	p, n, err := Parse(pkt)
	if err != nil || n != len(pkt)-4 {
		t.Fatalf("parse: n=%d err=%v", n, err)
	}
	if p.Type != TypePublish || p.QoS() != 1 || p.ID != 77 || string(p.Topic) != "scp/v1/t/T-1/resp" || !bytes.Equal(p.Payload, payload) {
		t.Fatalf("publish decoded as %+v", p)
	}
	// Appending to a returned view must not overwrite the next packet.
	_ = append(p.Payload, 'z')
	if q, k, err := Parse(pkt[n:]); err != nil || k != 4 || q.Type != TypePuback || q.ID != 9 {
		t.Fatalf("second packet: %+v k=%d err=%v", q, k, err)
	}
	for i := range n {
		if _, k, err := Parse(pkt[:i]); k != 0 || err != nil {
			t.Fatalf("prefix of %d bytes: k=%d err=%v, want 'need more'", i, k, err)
		}
	}
	// QoS 0 has no packet id.
	q0 := Frame(0x30, append(AppendString(nil, "t"), "hi"...))
	if p, n, err := Parse(q0); err != nil || n != len(q0) || p.QoS() != 0 || p.ID != 0 || string(p.Payload) != "hi" {
		t.Errorf("QoS 0 publish: %+v n=%d err=%v", p, n, err)
	}
}

func TestParseAcks(t *testing.T) {
	for _, c := range []struct {
		in   []byte
		typ  byte
		id   uint16
		code byte
	}{
		{[]byte{0x20, 2, 0, 0}, TypeConnack, 0, 0},
		{[]byte{0x20, 2, 1, 5}, TypeConnack, 0, 5},
		{[]byte{0x90, 4, 0, 1, 1, 0x80}, TypeSuback, 1, 1},
		{[]byte{0x40, 2, 0xff, 0xfe}, TypePuback, 0xfffe, 0},
		{[]byte{0xd0, 0}, TypePingresp, 0, 0},
	} {
		p, n, err := Parse(c.in)
		if err != nil || n != len(c.in) || p.Type != c.typ || p.ID != c.id || p.Code != c.code {
			t.Errorf("% x: %+v n=%d err=%v", c.in, p, n, err)
		}
	}
	p, _, _ := Parse([]byte{0x90, 4, 0, 1, 1, 0x80})
	if !bytes.Equal(p.Payload, []byte{1, 0x80}) {
		t.Errorf("SUBACK codes % x", p.Payload)
	}
}

func TestParseRejectsMalformed(t *testing.T) {
	for name, in := range map[string][]byte{
		"length 5 bytes":         {0x30, 0x80, 0x80, 0x80, 0x80, 0x01},
		"over the bound":         append([]byte{0x30}, AppendLength(nil, PacketMax+1)...),
		"connack long":           {0x20, 3, 0, 0, 0},
		"connack flags":          {0x21, 2, 0, 0},
		"connack reserved bits":  {0x20, 2, 2, 0},
		"suback no codes":        {0x90, 2, 0, 1},
		"puback short":           {0x40, 1, 0},
		"pingresp body":          {0xd0, 1, 0},
		"publish qos 3":          {0x36, 5, 0, 1, 't', 0, 1},
		"publish dup qos 0":      {0x38, 3, 0, 1, 't'},
		"publish empty":          {0x32, 0},
		"publish empty topic":    {0x32, 4, 0, 0, 0, 1},
		"publish topic too long": {0x32, 4, 0, 9, 't', 't'},
		"publish no id":          {0x32, 3, 0, 1, 't'},
		"publish id 0":           {0x32, 5, 0, 1, 't', 0, 0},
		"connect (client-bound)": append([]byte{0x10, 2}, 0, 0),
		"reserved type 0":        {0x00, 0},
		"reserved type 15":       {0xf0, 0},
	} {
		if p, n, err := Parse(in); err == nil {
			t.Errorf("%s: % x accepted as %+v n=%d", name, in, p, n)
		}
	}
}

// FuzzParsePacket: the decoder never panics, never claims more bytes than
// it was given, answers 'need more' for every proper prefix of a packet it
// decodes, and a decoded QoS 1 PUBLISH or PUBACK re-encodes to a packet
// that decodes the same.
func FuzzParsePacket(f *testing.F) {
	f.Add(append(AppendPublishHeader(nil, "scp/v1/t/T-1/resp", 1, false, 5), "hello"...))
	f.Add([]byte{0x20, 2, 0, 0})
	f.Add([]byte{0x90, 3, 0, 1, 1})
	f.Add([]byte{0x40, 2, 0, 7})
	f.Add([]byte{0xd0, 0})
	f.Add([]byte{0x30, 0xff, 0xff, 0xff, 0x7f})
	f.Add(Frame(0x30, append(AppendString(nil, "t"), "hi"...)))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, n, err := Parse(b)
		if err != nil {
			if n != 0 {
				t.Fatalf("error %v with n=%d", err, n)
			}
			return
		}
		if n < 0 || n > len(b) {
			t.Fatalf("n=%d of %d bytes", n, len(b))
		}
		if n == 0 {
			return
		}
		for _, k := range []int{0, 1, n / 2, n - 1} {
			if _, m, err := Parse(b[:k]); m != 0 || err != nil {
				t.Fatalf("prefix %d of a %d-byte packet: m=%d err=%v", k, n, m, err)
			}
		}
		var re []byte
		switch {
		case p.Type == TypePublish && p.QoS() == 1:
			re = append(AppendPublishHeader(nil, string(p.Topic), p.ID, false, len(p.Payload)), p.Payload...)
		case p.Type == TypePuback:
			re = AppendPuback(nil, p.ID)
		default:
			return
		}
		q, m, err := Parse(re)
		if err != nil || m != len(re) || q.Type != p.Type || q.ID != p.ID ||
			!bytes.Equal(q.Topic, p.Topic) || !bytes.Equal(q.Payload, p.Payload) {
			t.Fatalf("re-encoded %+v decodes as %+v (m=%d err=%v)", p, q, m, err)
		}
	})
}

func TestRetainedPublishAndControlPackets(t *testing.T) {
	b := append(AppendPublishHeader(nil, "scp/v1/t/T-1/cfg", 9, true, 3), "doc"...)
	if b[0] != 0x33 {
		t.Fatalf("retained QoS 1 PUBLISH first byte %#x, want 0x33", b[0])
	}
	p, n, err := Parse(b)
	if err != nil || n != len(b) || !p.Retain() || p.QoS() != 1 || p.ID != 9 || string(p.Payload) != "doc" {
		t.Fatalf("retained publish decodes as %+v n=%d err=%v", p, n, err)
	}
	p, _, _ = Parse(AppendPublishHeader(nil, "a", 1, false, 0))
	if p.Retain() {
		t.Fatal("plain publish decodes as retained")
	}
	if got := AppendPingreq(nil); !bytes.Equal(got, []byte{0xc0, 0}) {
		t.Fatalf("PINGREQ % x", got)
	}
	if got := AppendDisconnect(nil); !bytes.Equal(got, []byte{0xe0, 0}) {
		t.Fatalf("DISCONNECT % x", got)
	}
}
