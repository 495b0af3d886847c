package proxy

import (
	"encoding/binary"
	"errors"
	"io"
)

// A pass-through tunnel under a tenant's host rules is checked by the
// server name its TLS ClientHello asks for (tunnel.go). The hello is read
// here with a parser of its own rather than by crypto/tls (a tls.Server
// over a recording conn whose GetConfigForClient notes the name and fails
// the handshake): this one reads exactly the records that carry the
// hello, so the bytes read are the bytes forwarded; it writes nothing to
// the client and keeps no handshake state; it takes what servers take (a
// trailing dot, any TLS version's hello) where crypto/tls refuses some;
// and it refuses what would let the client and the server read two
// different names from one hello (two server_name extensions, two host
// names in one, an encrypted_client_hello extension whose inner hello
// names another server).

// maxClientHello bounds the ClientHello message read from a tunnel. A
// hello with post-quantum key shares is under 2 KiB; crypto/tls itself
// takes up to 64 KiB, but none near that is seen in practice.
const maxClientHello = 16 << 10

const (
	recordTypeHandshake   = 0x16
	handshakeClientHello  = 1
	extServerName         = 0
	extEncryptedHello     = 0xfe0d // RFC 9849
	sniHostName           = 0
	maxTLSRecordPlaintext = 1 << 14
)

var (
	// errNotTLS: the first bytes are not a TLS handshake record.
	errNotTLS = errors.New("not a TLS handshake")
	// errBadHello: a handshake record that does not hold a ClientHello
	// egressd can read, or one over maxClientHello.
	errBadHello = errors.New("unreadable TLS ClientHello")
)

// clientHello is what readClientHello learned.
type clientHello struct {
	// raw is every byte read, to be forwarded as it is.
	raw []byte
	// serverName is the host_name of the server_name extension, as sent
	// ("" when there is none).
	serverName string
	// ech: the hello carries an encrypted_client_hello extension, so the
	// server it reaches may act on another name, hidden inside.
	ech bool
}

// readClientHello reads the TLS records that carry a client's first
// handshake message, which must be a ClientHello, and nothing after them.
// An error other than errNotTLS and errBadHello is the reader's (a
// timeout, the client gone).
func readClientHello(r io.Reader) (*clientHello, error) {
	var raw, msg []byte
	for {
		hdr := make([]byte, 5)
		if _, err := io.ReadFull(r, hdr); err != nil {
			return nil, err
		}
		raw = append(raw, hdr...)
		n := int(binary.BigEndian.Uint16(hdr[3:]))
		if hdr[0] != recordTypeHandshake || hdr[1] != 3 {
			if len(msg) == 0 {
				return nil, errNotTLS
			}
			return nil, errBadHello // the hello's records were interrupted
		}
		if n == 0 || n > maxTLSRecordPlaintext || len(msg)+n > maxClientHello+4 {
			return nil, errBadHello
		}
		start := len(raw)
		raw = append(raw, make([]byte, n)...)
		if _, err := io.ReadFull(r, raw[start:]); err != nil {
			return nil, err
		}
		msg = append(msg, raw[start:]...)
		if len(msg) < 4 {
			continue
		}
		if msg[0] != handshakeClientHello {
			return nil, errBadHello
		}
		size := int(msg[1])<<16 | int(msg[2])<<8 | int(msg[3])
		if size > maxClientHello {
			return nil, errBadHello
		}
		if len(msg) < 4+size {
			continue
		}
		if len(msg) > 4+size {
			// Another handshake message after the hello: a client waits
			// for the server's answer first.
			return nil, errBadHello
		}
		h, ok := parseClientHello(msg[4:])
		if !ok {
			return nil, errBadHello
		}
		h.raw = raw
		return h, nil
	}
}

// parseClientHello reads a ClientHello body (RFC 8446 4.1.2, which RFC
// 5246's is a prefix of) for its server name.
func parseClientHello(b []byte) (*clientHello, bool) {
	s := cursor(b)
	var sid, suites, comp cursor
	if !s.skip(2+32) || !s.vec8(&sid) || len(sid) > 32 || !s.vec16(&suites) || len(suites) < 2 || !s.vec8(&comp) || len(comp) < 1 {
		return nil, false
	}
	h := &clientHello{}
	if len(s) == 0 {
		return h, true // no extensions, so no server name
	}
	var exts cursor
	if !s.vec16(&exts) || len(s) != 0 {
		return nil, false
	}
	seen := map[uint16]bool{}
	for len(exts) > 0 {
		var typ uint16
		var data cursor
		if !exts.u16(&typ) || !exts.vec16(&data) {
			return nil, false
		}
		if seen[typ] {
			return nil, false // RFC 8446 4.2: at most one of each
		}
		seen[typ] = true
		switch typ {
		case extServerName:
			name, ok := parseServerName(data)
			if !ok {
				return nil, false
			}
			h.serverName = name
		case extEncryptedHello:
			h.ech = true
		}
	}
	return h, true
}

// parseServerName reads a server_name extension (RFC 6066 3): exactly one
// host_name.
func parseServerName(data cursor) (string, bool) {
	var list cursor
	if !data.vec16(&list) || len(data) != 0 || len(list) == 0 {
		return "", false
	}
	name := ""
	for len(list) > 0 {
		var typ uint8
		var v cursor
		if !list.u8(&typ) || !list.vec16(&v) {
			return "", false
		}
		if typ != sniHostName {
			continue
		}
		if name != "" || len(v) == 0 || len(v) > 255 {
			return "", false
		}
		name = string(v)
	}
	return name, name != ""
}

// cursor reads a byte string front to back; each method reports whether
// there was enough left.
type cursor []byte

func (c *cursor) skip(n int) bool {
	if len(*c) < n {
		return false
	}
	*c = (*c)[n:]
	return true
}

func (c *cursor) u8(v *uint8) bool {
	if len(*c) < 1 {
		return false
	}
	*v = (*c)[0]
	*c = (*c)[1:]
	return true
}

func (c *cursor) u16(v *uint16) bool {
	if len(*c) < 2 {
		return false
	}
	*v = binary.BigEndian.Uint16(*c)
	*c = (*c)[2:]
	return true
}

// vec8 and vec16 read a vector with a 1- or 2-byte length.
func (c *cursor) vec8(v *cursor) bool {
	var n uint8
	return c.u8(&n) && c.take(int(n), v)
}

func (c *cursor) vec16(v *cursor) bool {
	var n uint16
	return c.u16(&n) && c.take(int(n), v)
}

func (c *cursor) take(n int, v *cursor) bool {
	if len(*c) < n {
		return false
	}
	*v = (*c)[:n]
	*c = (*c)[n:]
	return true
}
