package wsframe

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

// The frames of RFC 6455 section 5.7, read one byte at a time.
func TestReaderRFCExamples(t *testing.T) {
	type frame struct {
		h       Header
		payload string
	}
	cases := []struct {
		name string
		in   []byte
		want []frame
	}{
		{"unmasked text", []byte{0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f},
			[]frame{{Header{Fin: true, Opcode: Text, Length: 5}, "Hello"}}},
		{"masked text", []byte{0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58},
			[]frame{{Header{Fin: true, Opcode: Text, Masked: true, Key: [4]byte{0x37, 0xfa, 0x21, 0x3d}, Length: 5}, "Hello"}}},
		{"fragmented", []byte{0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f},
			[]frame{{Header{Opcode: Text, Length: 3}, "Hel"}, {Header{Fin: true, Opcode: Continuation, Length: 2}, "lo"}}},
		{"ping and pong", []byte{0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58},
			[]frame{{Header{Fin: true, Opcode: Ping, Length: 5}, "Hello"}, {Header{Fin: true, Opcode: Pong, Masked: true, Key: [4]byte{0x37, 0xfa, 0x21, 0x3d}, Length: 5}, "Hello"}}},
		{"16-bit length", append([]byte{0x82, 0x7E, 0x01, 0x00}, bytes.Repeat([]byte{7}, 256)...),
			[]frame{{Header{Fin: true, Opcode: Binary, Length: 256}, string(bytes.Repeat([]byte{7}, 256))}}},
		{"64-bit length", append([]byte{0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0}, bytes.Repeat([]byte{7}, 65536)...),
			[]frame{{Header{Fin: true, Opcode: Binary, Length: 65536}, string(bytes.Repeat([]byte{7}, 65536))}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := NewReader(iotest.OneByteReader(bytes.NewReader(tc.in)))
			for _, w := range tc.want {
				h, err := r.Next()
				if err != nil || h != w.h {
					t.Fatalf("header %+v %v, want %+v", h, err, w.h)
				}
				p, err := io.ReadAll(r)
				if err != nil || string(p) != w.payload {
					t.Fatalf("payload %q %v, want %q", p, err, w.payload)
				}
			}
			if _, err := r.Next(); err != io.EOF {
				t.Fatalf("at the end: %v, want io.EOF", err)
			}
		})
	}
}

func TestReaderRefuses(t *testing.T) {
	cases := []struct {
		name string
		in   []byte
		want error
	}{
		{"RSV1", []byte{0xC1, 0x00}, ErrReservedBits},
		{"RSV3", []byte{0x91, 0x00}, ErrReservedBits},
		{"opcode 3", []byte{0x83, 0x00}, ErrOpcode},
		{"opcode 0xF", []byte{0x8F, 0x00}, ErrOpcode},
		{"fragmented close", []byte{0x08, 0x00}, ErrControlFragmented},
		{"ping of 126", []byte{0x89, 0x7E, 0x00, 0x7E}, ErrControlTooLong},
		{"length top bit", []byte{0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 0}, ErrLength},
		{"length top bit, key cut", []byte{0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0, 1}, ErrLength},
		{"continuation first", []byte{0x80, 0x00}, ErrContinuation},
		{"text in a message", []byte{0x01, 0x00, 0x81, 0x00}, ErrUnfinished},
		{"cut in a header", []byte{0x81}, io.ErrUnexpectedEOF},
		{"cut in a length", []byte{0x81, 0x7E, 0x01}, io.ErrUnexpectedEOF},
		{"cut in a key", []byte{0x81, 0x81, 0x01}, io.ErrUnexpectedEOF},
		{"cut in a payload", []byte{0x81, 0x05, 0x48}, io.ErrUnexpectedEOF},
		{"cut in a message", []byte{0x01, 0x01, 0x48}, io.ErrUnexpectedEOF},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := NewReader(bytes.NewReader(tc.in))
			var err error
			for err == nil {
				if _, err = r.Next(); err == nil {
					_, err = io.Copy(io.Discard, r)
				}
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if errors.Is(tc.want, ErrProtocol) != errors.Is(err, ErrProtocol) {
				t.Errorf("%v: ErrProtocol %v", err, errors.Is(err, ErrProtocol))
			}
			if _, again := r.Next(); again != err {
				t.Errorf("not sticky: %v then %v", err, again)
			}
		})
	}
}

// A frame that declares more than it holds allocates nothing for it.
func TestReaderDeclaredLengthNotAllocated(t *testing.T) {
	in := []byte{0x82, 0x7F, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 1, 2, 3}
	r := NewReader(bytes.NewReader(in))
	allocs := testing.AllocsPerRun(1, func() {
		r = NewReader(bytes.NewReader(in))
		if _, err := r.Next(); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 3 {
		t.Errorf("%v allocations for a header", allocs)
	}
	var buf [8]byte
	n, err := io.ReadFull(r, buf[:])
	if n != 3 || err != io.ErrUnexpectedEOF {
		t.Fatalf("read %d %v", n, err)
	}
}

func TestAppendHeader(t *testing.T) {
	for _, n := range []int{0, 125, 126, 0xFFFF, 0x10000} {
		b := AppendHeader(nil, n%2 == 0, Binary, n)
		b = append(b, make([]byte, n)...)
		r := NewReader(bytes.NewReader(b))
		h, err := r.Next()
		if err != nil || h.Length != uint64(n) || h.Fin != (n%2 == 0) || h.Opcode != Binary || h.Masked {
			t.Fatalf("%d: %+v %v", n, h, err)
		}
		if want := map[bool]int{true: 2, false: 4}[n < 126]; n <= 0xFFFF && len(b)-n != want || n > 0xFFFF && len(b)-n != 10 {
			t.Errorf("%d: header of %d bytes, not the shortest", n, len(b)-n)
		}
	}
}
