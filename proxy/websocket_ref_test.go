package proxy

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// A straightforward WebSocket frame parser and builder for the tests: it
// reads a whole buffer at once, index by index, with no streaming, so the
// streaming reader and masker can be checked against it.

// refFrame is one frame as the reference parses it.
type refFrame struct {
	fin     bool
	rsv     byte
	op      byte
	masked  bool
	payload []byte // unmasked
}

// wsEvent is what an application sees of a stream: a control frame, or a
// whole data message (its fragments joined).
type wsEvent struct {
	op      byte
	payload string
}

func (e wsEvent) String() string { return fmt.Sprintf("%#x:%q", e.op, e.payload) }

// refParse splits b into frames. It stops at the first frame that is cut
// short or breaks RFC 6455's rules (reserved bits, reserved opcodes,
// control frames fragmented or longer than 125 bytes, a 64-bit length
// with its top bit set, fragments out of order) and reports it, with the
// frames before it. A stream that ends inside a fragmented message is
// cut short too.
func refParse(b []byte) (frames []refFrame, bad string) {
	open := false
	for i := 0; i < len(b); {
		if len(b)-i < 2 {
			return frames, "cut short in a header"
		}
		b0, b1 := b[i], b[i+1]
		f := refFrame{fin: b0&0x80 != 0, rsv: b0 & 0x70, op: b0 & 0x0F, masked: b1&0x80 != 0}
		control := f.op >= 8
		switch {
		case f.rsv != 0:
			return frames, "reserved bits"
		case f.op != 0 && f.op != 1 && f.op != 2 && f.op != 8 && f.op != 9 && f.op != 10:
			return frames, "reserved opcode"
		case control && !f.fin:
			return frames, "fragmented control frame"
		}
		n := uint64(b1 & 0x7F)
		i += 2
		if control && n > 125 {
			return frames, "control frame too long"
		}
		switch n {
		case 126:
			if len(b)-i < 2 {
				return frames, "cut short in a length"
			}
			n = uint64(binary.BigEndian.Uint16(b[i:]))
			i += 2
		case 127:
			if len(b)-i < 8 {
				return frames, "cut short in a length"
			}
			n = binary.BigEndian.Uint64(b[i:])
			i += 8
			if n>>63 != 0 {
				return frames, "length out of range"
			}
		}
		var key []byte
		if f.masked {
			if len(b)-i < 4 {
				return frames, "cut short in a key"
			}
			key = b[i : i+4]
			i += 4
		}
		switch {
		case control:
		case f.op == 0 && !open:
			return frames, "continuation outside a message"
		case f.op != 0 && open:
			return frames, "new message inside a message"
		default:
			open = !f.fin
		}
		if uint64(len(b)-i) < n {
			return frames, "cut short in a payload"
		}
		f.payload = bytes.Clone(b[i : i+int(n)])
		for j := range f.payload {
			if key != nil {
				f.payload[j] ^= key[j%4]
			}
		}
		i += int(n)
		frames = append(frames, f)
	}
	if open {
		return frames, "cut short in a message"
	}
	return frames, ""
}

// refEvents joins frames into what an application sees, and returns the
// payload of a message left unfinished.
func refEvents(frames []refFrame) (events []wsEvent, unfinished []byte) {
	var op byte
	var msg []byte
	open := false
	for _, f := range frames {
		if f.op >= 8 {
			events = append(events, wsEvent{f.op, string(f.payload)})
			continue
		}
		if f.op != 0 {
			op, msg, open = f.op, nil, true
		}
		msg = append(msg, f.payload...)
		if f.fin {
			events = append(events, wsEvent{op, string(msg)})
			msg, open = nil, false
		}
	}
	if open && msg == nil {
		msg = []byte{}
	}
	return events, msg
}

// wsFrameOpts are the odd forms a test frame may take.
type wsFrameOpts struct {
	rsv byte // reserved bits, in place (0x40, 0x20, 0x10)
	// masked with key.
	masked bool
	key    [4]byte
	// lenForm forces the length's form: 0 shortest, 16 or 64 bits (longer
	// than needed, which RFC 6455 forbids but readers commonly accept).
	lenForm int
	// declared overrides the length written (a frame that lies).
	declared *uint64
}

// wsFrame builds one frame.
func wsFrame(fin bool, op byte, payload []byte, o wsFrameOpts) []byte {
	b0 := op&0x0F | o.rsv
	if fin {
		b0 |= 0x80
	}
	var mb byte
	if o.masked {
		mb = 0x80
	}
	n := uint64(len(payload))
	if o.declared != nil {
		n = *o.declared
	}
	out := []byte{b0}
	switch {
	case o.lenForm == 64 || o.lenForm == 0 && n > 0xFFFF:
		out = binary.BigEndian.AppendUint64(append(out, mb|127), n)
	case o.lenForm == 16 || o.lenForm == 0 && n >= 126:
		out = binary.BigEndian.AppendUint16(append(out, mb|126), uint16(n))
	default:
		out = append(out, mb|byte(n))
	}
	if o.masked {
		out = append(out, o.key[:]...)
		for i, c := range payload {
			out = append(out, c^o.key[i%4])
		}
		return out
	}
	return append(out, payload...)
}

// text, binary, cont, ping and closeFrame build plain unmasked frames.
func textFrame(fin bool, s string) []byte { return wsFrame(fin, 1, []byte(s), wsFrameOpts{}) }
func contFrame(fin bool, s string) []byte { return wsFrame(fin, 0, []byte(s), wsFrameOpts{}) }
func pingFrame(s string) []byte           { return wsFrame(true, 9, []byte(s), wsFrameOpts{}) }
func closeFrame(code uint16, reason string) []byte {
	return wsFrame(true, 8, append(binary.BigEndian.AppendUint16(nil, code), reason...), wsFrameOpts{})
}
