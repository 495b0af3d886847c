package proxy

import (
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// captureConn records what a TLS client writes and ends its handshake
// with EOF.
type captureConn struct {
	net.Conn
	out bytes.Buffer
}

func (c *captureConn) Write(b []byte) (int, error)      { return c.out.Write(b) }
func (c *captureConn) Read([]byte) (int, error)         { return 0, io.EOF }
func (c *captureConn) Close() error                     { return nil }
func (c *captureConn) SetDeadline(time.Time) error      { return nil }
func (c *captureConn) SetReadDeadline(time.Time) error  { return nil }
func (c *captureConn) SetWriteDeadline(time.Time) error { return nil }

// goHello is the ClientHello records crypto/tls sends for cfg.
func goHello(t testing.TB, cfg *tls.Config) []byte {
	t.Helper()
	c := &captureConn{}
	tls.Client(c, cfg).Handshake()
	if c.out.Len() == 0 {
		t.Fatal("no ClientHello written")
	}
	return c.out.Bytes()
}

// refragment splits the handshake records of hello into records of at
// most size bytes each.
func refragment(t testing.TB, hello []byte, size int) []byte {
	t.Helper()
	var msg []byte
	vers := hello[1:3]
	for b := hello; len(b) > 0; {
		n := int(binary.BigEndian.Uint16(b[3:5]))
		msg = append(msg, b[5:5+n]...)
		b = b[5+n:]
	}
	var out []byte
	for len(msg) > 0 {
		n := min(size, len(msg))
		out = append(out, 0x16, vers[0], vers[1], byte(n>>8), byte(n))
		out = append(out, msg[:n]...)
		msg = msg[n:]
	}
	return out
}

// helloMsg builds a ClientHello record by hand, with the extensions given
// (each made by ext); none: no extensions block.
func helloMsg(exts ...[]byte) []byte {
	body := []byte{3, 3}
	body = append(body, make([]byte, 32)...)    // random
	body = append(body, 0)                      // session id
	body = append(body, 0, 2, 0x13, 0x01, 1, 0) // one suite, null compression
	var e []byte
	for _, x := range exts {
		e = append(e, x...)
	}
	if exts != nil {
		body = binary.BigEndian.AppendUint16(body, uint16(len(e)))
		body = append(body, e...)
	}
	msg := append([]byte{1, byte(len(body) >> 16), byte(len(body) >> 8), byte(len(body))}, body...)
	return append([]byte{0x16, 3, 1, byte(len(msg) >> 8), byte(len(msg))}, msg...)
}

func ext(typ uint16, data []byte) []byte {
	out := binary.BigEndian.AppendUint16(nil, typ)
	out = binary.BigEndian.AppendUint16(out, uint16(len(data)))
	return append(out, data...)
}

// sniExt is a server_name extension holding names (type host_name).
func sniExt(names ...string) []byte {
	var list []byte
	for _, n := range names {
		list = append(list, 0)
		list = binary.BigEndian.AppendUint16(list, uint16(len(n)))
		list = append(list, n...)
	}
	return ext(0, append(binary.BigEndian.AppendUint16(nil, uint16(len(list))), list...))
}

func TestReadClientHello(t *testing.T) {
	goSNI := goHello(t, &tls.Config{ServerName: "api.example.test"})
	cases := []struct {
		name  string
		in    []byte
		sni   string
		ech   bool
		err   error
		extra bool // bytes after the hello stay unread
	}{
		{"crypto/tls hello", goSNI, "api.example.test", false, nil, false},
		{"crypto/tls hello, no name", goHello(t, &tls.Config{InsecureSkipVerify: true}), "", false, nil, false},
		{"crypto/tls TLS 1.2 hello", goHello(t, &tls.Config{ServerName: "a.test", MaxVersion: tls.VersionTLS12}), "a.test", false, nil, false},
		{"one byte a record", refragment(t, goSNI, 1), "api.example.test", false, nil, false},
		{"100 bytes a record", refragment(t, goSNI, 100), "api.example.test", false, nil, false},
		{"what follows is not read", append(slicesClone(goSNI), "after"...), "api.example.test", false, nil, true},
		{"trailing dot as sent", helloMsg(sniExt("evil.test.")), "evil.test.", false, nil, false},
		{"no extensions at all", helloMsg(), "", false, nil, false},
		{"an empty extensions block", helloMsg(nil), "", false, nil, false},
		{"ECH", helloMsg(sniExt("front.test"), ext(0xfe0d, []byte{0})), "front.test", true, nil, false},
		{"two server_name extensions", helloMsg(sniExt("a.test"), sniExt("b.test")), "", false, errBadHello, false},
		{"two host names in one", helloMsg(sniExt("a.test", "b.test")), "", false, errBadHello, false},
		{"empty host name", helloMsg(sniExt("")), "", false, errBadHello, false},
		{"plain HTTP", []byte("GET / HTTP/1.1\r\nHost: evil.test\r\n\r\n"), "", false, errNotTLS, false},
		{"SSLv2 hello", []byte{0x80, 0x2e, 0x01, 0x03, 0x01}, "", false, errNotTLS, false},
		{"alert record", []byte{0x15, 3, 3, 0, 2, 2, 40}, "", false, errNotTLS, false},
		{"not a ClientHello", []byte{0x16, 3, 3, 0, 4, 2, 0, 0, 0}, "", false, errBadHello, false},
		{"empty record", []byte{0x16, 3, 3, 0, 0}, "", false, errBadHello, false},
		{"oversized record", []byte{0x16, 3, 3, 0x40, 0x01}, "", false, errBadHello, false},
		{"oversized hello", []byte{0x16, 3, 3, 0, 4, 1, 0x01, 0, 0}, "", false, errBadHello, false},
		{"hello interrupted by another record", append(refragment(t, goSNI, 100)[:105], 0x17, 3, 3, 0, 1, 0), "", false, errBadHello, false},
		{"truncated", goSNI[:len(goSNI)-1], "", false, io.ErrUnexpectedEOF, false},
		{"nothing", nil, "", false, io.EOF, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := bytes.NewReader(c.in)
			h, err := readClientHello(r)
			if c.err != nil {
				if !errors.Is(err, c.err) {
					t.Fatalf("err %v, want %v", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if h.serverName != c.sni || h.ech != c.ech {
				t.Fatalf("server name %q ech %v, want %q %v", h.serverName, h.ech, c.sni, c.ech)
			}
			if !bytes.Equal(h.raw, c.in[:len(h.raw)]) || (r.Len() > 0) != c.extra || len(h.raw)+r.Len() != len(c.in) {
				t.Fatalf("read %d of %d bytes (%d left), want the hello's records exactly", len(h.raw), len(c.in), r.Len())
			}
		})
	}
}

func slicesClone(b []byte) []byte { return append([]byte(nil), b...) }

// referenceServerName is the server name crypto/tls's server reads from
// in, if it reads a ClientHello there at all.
func referenceServerName(in []byte) (string, bool) {
	var name string
	seen := false
	cfg := &tls.Config{GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		name, seen = h.ServerName, true
		return nil, errors.New("stop")
	}}
	tls.Server(&readConn{r: bytes.NewReader(in)}, cfg).Handshake()
	return name, seen
}

type readConn struct {
	captureConn
	r io.Reader
}

func (c *readConn) Read(b []byte) (int, error) { return c.r.Read(b) }

// FuzzReadClientHello checks the parser against crypto/tls's server: it
// never panics, reads only the hello's records, and where both read a
// hello they read the same server name (so the name egressd checks is the
// one a server acts on).
func FuzzReadClientHello(f *testing.F) {
	f.Add(goHello(f, &tls.Config{ServerName: "api.example.test"}))
	f.Add(refragment(f, goHello(f, &tls.Config{ServerName: "a.test"}), 7))
	f.Add(goHello(f, &tls.Config{InsecureSkipVerify: true}))
	f.Add(helloMsg(sniExt("a.test", "b.test")))
	f.Add(helloMsg(sniExt("a.test"), ext(0xfe0d, nil)))
	f.Fuzz(func(t *testing.T, in []byte) {
		h, err := readClientHello(bytes.NewReader(in))
		if err != nil {
			return
		}
		if !bytes.Equal(h.raw, in[:len(h.raw)]) {
			t.Fatal("raw is not what was read")
		}
		ref, ok := referenceServerName(in)
		if ok && ref != h.serverName {
			t.Fatalf("crypto/tls reads server name %q, egressd %q", ref, h.serverName)
		}
	})
}
