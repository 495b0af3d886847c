package proxy

import (
	"bytes"
	"errors"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/egressd/egressd/internal/wsframe"
)

// The echoes of FuzzWebSocketRelay: overlapping values (the second inside
// the first), one shorter than its placeholder (a control frame can grow
// past 125 bytes), placeholders of characters no value holds.
var fuzzWSEchoes = []echo{
	newEcho([]byte("sk-live-SECRET-0123456789"), []byte(strings.Repeat("#", 40)+"!")),
	newEcho([]byte("SECRET-0123"), []byte("%%%%%%%%")),
	newEcho([]byte("abcd"), []byte(strings.Repeat("%#", 30))),
}

// wsGen builds a stream of frames from the fuzzer's bytes, one decision a
// byte; the stream ends when they do.
type wsGen struct {
	b   []byte
	out []byte
}

func (g *wsGen) more() bool { return len(g.b) > 0 }

func (g *wsGen) byte() byte {
	if len(g.b) == 0 {
		return 0
	}
	c := g.b[0]
	g.b = g.b[1:]
	return c
}

func (g *wsGen) bytes(n int) []byte {
	n = min(n, len(g.b))
	p := g.b[:n]
	g.b = g.b[n:]
	return p
}

// piece is a piece of a payload: bytes of the input, a value, a value's
// start or end, a placeholder.
func (g *wsGen) piece() []byte {
	c := g.byte()
	v := fuzzWSEchoes[int(c>>4)%len(fuzzWSEchoes)].value
	switch c % 6 {
	case 0:
		return g.bytes(int(c >> 3))
	case 1, 2:
		return v
	case 3:
		return v[:int(g.byte())%len(v)]
	case 4:
		return v[int(g.byte())%len(v):]
	default:
		return fuzzWSEchoes[0].placeholder
	}
}

func (g *wsGen) payload() []byte {
	var p []byte
	for range g.byte() % 4 {
		p = append(p, g.piece()...)
	}
	return p
}

// frame appends one frame: masked or not, and now and then a length in a
// longer form than needed.
func (g *wsGen) frame(fin bool, op byte, payload []byte) {
	c := g.byte()
	o := wsFrameOpts{masked: c&1 != 0}
	if o.masked {
		copy(o.key[:], g.bytes(4))
	}
	switch c >> 1 % 16 {
	case 0:
		o.lenForm = 16
		if len(payload) > 0xFFFF {
			o.lenForm = 64
		}
	case 1:
		o.lenForm = 64
	}
	g.out = append(g.out, wsFrame(fin, op, payload, o)...)
}

func (g *wsGen) control() {
	c := g.byte()
	op := []byte{8, 9, 10}[c%3]
	p := g.payload()
	if op == 8 {
		p = append([]byte{0x03, 0xe8}, p...)
	}
	if len(p) > 125 && c&0x80 == 0 {
		p = p[:125]
	}
	g.frame(true, op, p)
}

func (g *wsGen) stream() []byte {
	for g.more() {
		c := g.byte()
		switch c % 8 {
		case 0, 1, 2, 3, 4:
			// A message in one or more fragments, control frames between.
			op := byte(1 + c>>3&1)
			n := 1 + int(c>>4)%4
			for i := range n {
				if i > 0 {
					op = 0
				}
				g.frame(i == n-1, op, g.payload())
				if i < n-1 && g.byte()%3 == 0 {
					g.control()
				}
			}
		case 5:
			g.control()
		case 6:
			if c&0x80 != 0 && len(g.out) > 0 {
				// Cut short.
				g.out = g.out[:(int(g.byte())<<8|int(g.byte()))%len(g.out)]
				break
			}
			// Bytes as they come: mostly not a frame.
			g.out = append(g.out, g.bytes(int(c>>3)%8)...)
		case 7:
			if len(g.out) > 0 {
				at := (int(g.byte())<<8 | int(g.byte())) % len(g.out)
				g.out[at] ^= 1 << (c >> 3 % 8)
			}
		}
	}
	return g.out
}

// pieceReader hands out its bytes in reads of random sizes.
type pieceReader struct {
	b   []byte
	rng *rand.Rand
	max int
}

func (r *pieceReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), len(r.b), 1+r.rng.IntN(r.max))
	copy(p, r.b[:n])
	r.b = r.b[n:]
	return n, nil
}

// refMask is what the sandbox must see of an event: its payload with
// every echo masked (maskAll on the whole payload), a control payload cut
// to 125 bytes, a close frame's in whole UTF-8 characters.
func refMask(e wsEvent) wsEvent {
	p := maskAll([]byte(e.payload), fuzzWSEchoes)
	if e.op >= 8 && len(p) > 125 {
		n := 125
		for e.op == 8 && n > 2 && !utf8.RuneStart(p[n]) {
			n--
		}
		p = p[:n]
	}
	return wsEvent{e.op, string(p)}
}

// FuzzWebSocketRelay checks the streaming frame reader and masker
// (frameRelay) against the reference: frames built from the input
// (random fragmentation, control frames between fragments, masked and
// unmasked, longer length forms, values whole and in pieces across
// fragments, stray and flipped bytes), read in reads of random sizes, must
// give the sandbox the same messages and control frames as refParse of the
// whole input with each whole payload masked; a stream the reference
// finds bad must fail the relay with the same kind of error, after the
// same events, with any message it left unfinished a prefix of the
// reference's masked one. What the relay writes is always frames a client
// can read, unmasked, and never holds a value.
func FuzzWebSocketRelay(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0x00, 0x03, 0x01, 0x02, 0x11})
	f.Add([]byte{0x31, 0x00, 0x02, 0x01, 0x22, 0x00, 0x02, 0x13, 0x03, 0x05, 0x00, 0x00, 0x02, 0x11, 0x11})
	f.Add([]byte{0x10, 0x03, 0x01, 0x04, 0x07, 0x03, 0x09, 0x05, 0x02, 0x02, 0x00, 0x07, 0x30, 0x02, 0x04, 0x05, 0x02, 0x01, 0x01})
	f.Add([]byte("\x05\x83\x03\x01\x01\x01\x02\x00\x01\x21\x11\x13\x0f\x04\x14\x02\x01\x03\x00\x1f\x00\x07\x00\x05"))
	f.Fuzz(func(t *testing.T, data []byte) {
		in := (&wsGen{b: data}).stream()
		h := fnv.New64a()
		h.Write(data)
		seed := h.Sum64()
		src := &pieceReader{b: in, rng: rand.New(rand.NewPCG(seed, 1)), max: []int{1, 7, 300, 40000}[seed%4]}

		var out bytes.Buffer
		err := newFrameRelay(&out, src, fuzzWSEchoes).run()

		frames, bad := refParse(in)
		events, unfinished := refEvents(frames)
		for i := range events {
			events[i] = refMask(events[i])
		}
		switch {
		case bad == "" && err != nil:
			t.Fatalf("the relay failed on a good stream: %v", err)
		case bad != "" && err == nil:
			t.Fatalf("the relay passed a bad stream (%s)", bad)
		case strings.HasPrefix(bad, "cut short") && !errors.Is(err, io.ErrUnexpectedEOF):
			t.Fatalf("stream %s: relay error %v", bad, err)
		case bad != "" && !strings.HasPrefix(bad, "cut short") && !errors.Is(err, wsframe.ErrProtocol):
			t.Fatalf("stream: %s: relay error %v", bad, err)
		}

		gotFrames, gotBad := refParse(out.Bytes())
		if gotBad != "" && !(bad != "" && gotBad == "cut short in a message") {
			t.Fatalf("the relay wrote frames a client cannot read: %s", gotBad)
		}
		for _, f := range gotFrames {
			if f.masked {
				t.Fatal("the relay wrote a masked frame")
			}
		}
		got, gotUnfinished := refEvents(gotFrames)
		if !slices.Equal(got, events) {
			t.Fatalf("events:\n got %v\nwant %v", got, events)
		}
		if gotUnfinished != nil {
			// A message cut off by a bad frame: what went out of it is
			// masked and decided, its held-back end dropped.
			if bad == "cut short in a payload" {
				unfinished = append(unfinished, cutPayload(in, frames)...)
			}
			whole := maskAll(unfinished, fuzzWSEchoes)
			if !bytes.HasPrefix(whole, gotUnfinished) {
				t.Fatalf("unfinished message: got %q, not a prefix of %q", gotUnfinished, whole)
			}
			// The start of a value at its end never went out.
			if k := valueStartAtEnd(unfinished); k > 0 && bytes.HasSuffix(whole, unfinished[len(unfinished)-k:]) && len(gotUnfinished) > len(whole)-k {
				t.Fatalf("unfinished message: got %q, the start of a value at its end went out", gotUnfinished)
			}
		}
		for _, e := range fuzzWSEchoes {
			for _, f := range gotFrames {
				if bytes.Contains(f.payload, e.value) {
					t.Fatalf("a frame holds the value %q: %q", e.value, f.payload)
				}
			}
			for _, g := range got {
				if strings.Contains(g.payload, e.valueS) {
					t.Fatalf("a message holds the value %q: %q", e.value, g.payload)
				}
			}
		}
	})
}

// valueStartAtEnd is the length of the longest end of b that begins a
// value (and is shorter than it).
func valueStartAtEnd(b []byte) int {
	k := 0
	for _, e := range fuzzWSEchoes {
		for n := min(len(e.value)-1, len(b)); n > k; n-- {
			if bytes.HasSuffix(b, e.value[:n]) {
				k = n
				break
			}
		}
	}
	return k
}

// cutPayload is the payload (unmasked) of a data frame the stream ends
// in, after the frames the reference read: the relay may have passed
// some of it on before it found the frame cut short.
func cutPayload(in []byte, frames []refFrame) []byte {
	i := 0
	for range frames {
		_, n := frameSize(in[i:])
		i += n
	}
	b := in[i:]
	if len(b) < 2 || b[0]&0x0F >= 8 {
		return nil
	}
	hdr, _ := frameSize(b)
	if hdr < 0 || hdr > len(b) {
		return nil
	}
	p := bytes.Clone(b[hdr:])
	if b[1]&0x80 != 0 {
		for j := range p {
			p[j] ^= b[hdr-4+j%4]
		}
	}
	return p
}

// frameSize is the header length and whole length of the frame b begins
// with (the whole may pass the end of b).
func frameSize(b []byte) (hdr, whole int) {
	n := int(b[1] & 0x7F)
	hdr = 2
	switch n {
	case 126:
		if len(b) < 4 {
			return -1, len(b)
		}
		n, hdr = int(b[2])<<8|int(b[3]), 4
	case 127:
		if len(b) < 10 {
			return -1, len(b)
		}
		var u uint64
		for _, c := range b[2:10] {
			u = u<<8 | uint64(c)
		}
		n, hdr = int(min(u, 1<<40)), 10
	}
	if b[1]&0x80 != 0 {
		hdr += 4
	}
	return hdr, hdr + n
}
