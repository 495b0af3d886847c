// Package wsframe reads and writes WebSocket frames (RFC 6455 section 5)
// as streams: a frame's header is read and checked, its payload is read
// through the Reader (unmasked) in whatever pieces the caller asks for, so
// a declared length is never trusted for an allocation. Extensions are not
// supported: a frame with a reserved bit set is an error.
package wsframe

import (
	"encoding/binary"
	"io"
)

// Opcode is a frame's opcode.
type Opcode byte

// The opcodes of RFC 6455 section 5.2.
const (
	Continuation Opcode = 0x0
	Text         Opcode = 0x1
	Binary       Opcode = 0x2
	Close        Opcode = 0x8
	Ping         Opcode = 0x9
	Pong         Opcode = 0xA
)

// Control reports whether o is a control opcode (close, ping, pong).
func (o Opcode) Control() bool { return o&0x8 != 0 }

// known reports whether o is an opcode RFC 6455 defines.
func (o Opcode) known() bool {
	switch o {
	case Continuation, Text, Binary, Close, Ping, Pong:
		return true
	}
	return false
}

// MaxControlPayload is the longest payload a control frame may carry.
const MaxControlPayload = 125

// MaxHeader is the longest frame header: 2 bytes, a 64-bit length, a
// masking key.
const MaxHeader = 14

// Header is one frame's header.
type Header struct {
	Fin    bool
	Opcode Opcode
	Masked bool
	Key    [4]byte
	Length uint64
}

// Reader reads frames from a stream. Next reads a header, Read the
// payload of that frame.
type Reader struct {
	r    io.Reader
	hdr  [MaxHeader]byte
	h    Header
	left uint64 // payload bytes of the current frame not read yet
	pos  int    // offset into the masking key of the next payload byte
	// open: a fragmented text or binary message has begun and its final
	// frame has not come.
	open bool
	err  error // sticky: once failed, always failed
}

// NewReader returns a Reader over r.
func NewReader(r io.Reader) *Reader { return &Reader{r: r} }

// Next skips what is left of the current frame's payload and reads and
// checks the next frame's header: reserved bits, opcode, control frames
// (FIN set, at most MaxControlPayload bytes) and the order of fragments.
// At a frame boundary outside a fragmented message the source's io.EOF is
// returned as it is; a stream that ends anywhere else gives
// io.ErrUnexpectedEOF. Errors are sticky.
func (r *Reader) Next() (Header, error) {
	if r.err != nil {
		return Header{}, r.err
	}
	if r.left > 0 {
		if _, err := io.CopyN(io.Discard, r, int64(r.left)); err != nil {
			return Header{}, r.fail(err)
		}
	}
	h, err := r.header()
	if err != nil {
		return Header{}, r.fail(err)
	}
	r.h, r.left, r.pos = h, h.Length, 0
	return h, nil
}

func (r *Reader) fail(err error) error {
	r.err = err
	return err
}

func (r *Reader) header() (Header, error) {
	b := r.hdr[:]
	if _, err := io.ReadFull(r.r, b[:2]); err != nil {
		if err == io.EOF && r.open {
			err = io.ErrUnexpectedEOF
		}
		return Header{}, err
	}
	h := Header{Fin: b[0]&0x80 != 0, Opcode: Opcode(b[0] & 0x0F), Masked: b[1]&0x80 != 0}
	switch {
	case b[0]&0x70 != 0:
		return h, ErrReservedBits
	case !h.Opcode.known():
		return h, ErrOpcode
	case h.Opcode.Control() && !h.Fin:
		return h, ErrControlFragmented
	}
	n := uint64(b[1] & 0x7F)
	ext := 0
	switch n {
	case 126:
		ext = 2
	case 127:
		ext = 8
	}
	if h.Opcode.Control() && n > MaxControlPayload {
		return h, ErrControlTooLong
	}
	if _, err := io.ReadFull(r.r, b[2:2+ext]); err != nil {
		return h, unexpected(err)
	}
	switch ext {
	case 2:
		n = uint64(binary.BigEndian.Uint16(b[2:4]))
	case 8:
		n = binary.BigEndian.Uint64(b[2:10])
		if n>>63 != 0 {
			return h, ErrLength
		}
	}
	h.Length = n
	if h.Masked {
		if _, err := io.ReadFull(r.r, h.Key[:]); err != nil {
			return h, unexpected(err)
		}
	}
	switch {
	case h.Opcode.Control():
	case h.Opcode == Continuation && !r.open:
		return h, ErrContinuation
	case h.Opcode != Continuation && r.open:
		return h, ErrUnfinished
	default:
		r.open = !h.Fin
	}
	return h, nil
}

// unexpected turns an io.EOF inside a frame into io.ErrUnexpectedEOF.
func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// Read reads the current frame's payload, unmasked. It returns io.EOF at
// the payload's end (at once for an empty payload), and
// io.ErrUnexpectedEOF if the stream ends before it.
func (r *Reader) Read(p []byte) (int, error) {
	if r.left == 0 {
		if r.err != nil {
			return 0, r.err
		}
		return 0, io.EOF
	}
	if uint64(len(p)) > r.left {
		p = p[:r.left]
	}
	n, err := r.r.Read(p)
	r.left -= uint64(n)
	if r.h.Masked {
		r.pos = Unmask(p[:n], r.h.Key, r.pos)
	}
	if err != nil {
		if err == io.EOF && r.left == 0 {
			err = nil // the next Next sees the end
		} else {
			return n, r.fail(unexpected(err))
		}
	}
	return n, nil
}

// Remaining is how many bytes of the current frame's payload are left to
// read.
func (r *Reader) Remaining() uint64 { return r.left }

// InMessage reports whether a fragmented message has begun and not yet
// ended.
func (r *Reader) InMessage() bool { return r.open }

// Unmask applies (or undoes: XOR is its own inverse) the masking key to b,
// whose first byte is at offset pos of the payload modulo 4, and returns
// the offset after it.
func Unmask(b []byte, key [4]byte, pos int) int {
	for i := range b {
		b[i] ^= key[(pos+i)&3]
	}
	return (pos + len(b)) & 3
}

// AppendHeader appends the header of an unmasked frame (as a server sends
// them) with the given payload length, in the shortest form.
func AppendHeader(dst []byte, fin bool, op Opcode, length int) []byte {
	b0 := byte(op & 0x0F)
	if fin {
		b0 |= 0x80
	}
	switch {
	case length < 126:
		return append(dst, b0, byte(length))
	case length <= 0xFFFF:
		return binary.BigEndian.AppendUint16(append(dst, b0, 126), uint16(length))
	default:
		return binary.BigEndian.AppendUint64(append(dst, b0, 127), uint64(length))
	}
}
