package golden

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/egressd/egressd/certs"
	"github.com/egressd/egressd/proxy"
	"github.com/egressd/egressd/resolver"
	"github.com/egressd/egressd/vault"
)

// Seen is one request as the recording upstream received it. A gzip body
// is kept decoded.
type Seen struct {
	Method string
	URI    string
	Host   string
	Header http.Header
	Body   []byte
}

// Upstream is a recording HTTPS server for every *.test name (and a plain
// HTTP one), signed by its own CA.
type Upstream struct {
	TLS, Plain *httptest.Server
	Roots      *x509.CertPool
	CA         *certs.CA
	mu         sync.Mutex
	got        []Seen
	echo       []string
}

// NewUpstream starts the upstream servers; caDir receives their CA.
func NewUpstream(caDir string) (*Upstream, error) {
	ca, _, err := certs.LoadOrCreateCA(caDir)
	if err != nil {
		return nil, err
	}
	leafs, err := certs.NewLeafCache(ca, certs.LeafConfig{})
	if err != nil {
		return nil, err
	}
	u := &Upstream{Roots: x509.NewCertPool(), CA: ca}
	u.Roots.AddCert(ca.Certificate())
	u.TLS = httptest.NewUnstartedServer(u)
	u.TLS.TLS = &tls.Config{GetCertificate: func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
		name := h.ServerName
		if name == "" {
			name = "127.0.0.1"
		}
		return leafs.Get(name)
	}}
	u.TLS.StartTLS()
	u.Plain = httptest.NewServer(u)
	return u, nil
}

// SetEcho says what the next requests get back (UpstreamExpect.Echo).
func (u *Upstream) SetEcho(echo []string) {
	u.mu.Lock()
	u.echo = echo
	u.mu.Unlock()
}

// Received returns what arrived so far.
func (u *Upstream) Received() []Seen {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]Seen(nil), u.got...)
}

// reset forgets what arrived and what to echo, for the next case.
func (u *Upstream) reset() {
	u.mu.Lock()
	u.got, u.echo = nil, nil
	u.mu.Unlock()
}

// Close stops both servers.
func (u *Upstream) Close() {
	u.TLS.Close()
	u.Plain.Close()
}

func (u *Upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if strings.EqualFold(r.Header.Get("Content-Encoding"), "gzip") {
		if zr, err := gzip.NewReader(bytes.NewReader(body)); err == nil {
			if dec, err := io.ReadAll(zr); err == nil {
				body = dec
			}
		}
	}
	host, _, err := net.SplitHostPort(r.Host)
	if err != nil {
		host = r.Host
	}
	u.mu.Lock()
	u.got = append(u.got, Seen{Method: r.Method, URI: r.RequestURI, Host: host, Header: r.Header.Clone(), Body: body})
	echo := u.echo
	u.mu.Unlock()
	var out bytes.Buffer
	ctype := "text/plain; charset=utf-8"
	gzips, echoed := 0, false
	for _, e := range echo {
		if name, ok := strings.CutPrefix(e, "header "); ok {
			v := r.Header.Get(name)
			w.Header().Add("X-Echo", v)
			fmt.Fprintf(&out, "%s: %s\n", name, v)
			echoed = true
		} else if coding, ok := strings.CutPrefix(e, "content-encoding "); ok {
			w.Header().Add("Content-Encoding", coding)
		} else if e == "body" {
			ctype = "application/json"
			out.Write(body)
			echoed = true
		} else if e == "gzip" {
			gzips++
		}
	}
	if serveWebSocket(w, r, echo, out.Bytes()) {
		return
	}
	if !echoed {
		out.WriteString("ok\n")
	}
	b := out.Bytes()
	for range gzips {
		var z bytes.Buffer
		zw := gzip.NewWriter(&z)
		zw.Write(b)
		zw.Close()
		b = z.Bytes()
	}
	w.Header().Set("Content-Type", ctype)
	w.Write(b)
}

// Local is the real proxy built in-process in front of an Upstream: a
// fresh vault, resolver, CA and leaf cache, with 127.0.0.0/8 allowed and a
// lookup that sends every *.test name to 127.0.0.1 (private.test to
// 10.1.2.3, metadata.test to 169.254.169.254).
type Local struct {
	Store    *vault.Store
	Resolver *resolver.Resolver
	CA       *certs.CA
	Proxy    *proxy.Proxy
	Addr     string
	Up       *Upstream
	TenantID string
	Events   chan *proxy.Event
	done     chan struct{}
}

type lookup map[string]netip.Addr

func (l lookup) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if a, ok := l[host]; ok {
		return []netip.Addr{a}, nil
	}
	if strings.HasSuffix(host, ".test") {
		return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

// openVault opens a run's vault with its data in dir: a bbolt file there.
// The suite's TestMain may put it on another backend (PostgreSQL, with
// EGRESSD_TEST_STORE=postgres).
var openVault = func(dir string) (*vault.Store, error) {
	return vault.Open(vault.Config{Path: filepath.Join(dir, "vault.db"), MasterKey: vault.NewMasterKey(), NoSync: true})
}

// StartLocal builds the proxy with its data in dir.
func StartLocal(dir string) (l *Local, err error) {
	l = &Local{Events: make(chan *proxy.Event, 1000), done: make(chan struct{})}
	defer func() {
		if err != nil {
			l.Close()
		}
	}()
	if l.Up, err = NewUpstream(filepath.Join(dir, "upstream-ca")); err != nil {
		return nil, err
	}
	if l.Store, err = openVault(dir); err != nil {
		return nil, err
	}
	if l.Resolver, err = resolver.New(resolver.Config{Store: l.Store}); err != nil {
		return nil, err
	}
	if l.CA, _, err = certs.LoadOrCreateCA(filepath.Join(dir, "ca")); err != nil {
		return nil, err
	}
	leafs, err := certs.NewLeafCache(l.CA, certs.LeafConfig{})
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	l.Addr = ln.Addr().String()
	l.Proxy, err = proxy.New(proxy.Config{
		Store: l.Store, Resolver: l.Resolver, Leafs: leafs,
		Sink: proxy.SinkFunc(func(_ context.Context, ev *proxy.Event) error {
			if ev.Final {
				cp := *ev
				cp.Uses = append([]proxy.Use(nil), ev.Uses...)
				l.Events <- &cp
			}
			return nil
		}),
		AllowPrivate:  []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		OwnListeners:  []netip.AddrPort{netip.MustParseAddrPort(l.Addr)},
		UpstreamRoots: l.Up.Roots,
		Redact:        true,
		Lookup:        lookup{"private.test": netip.MustParseAddr("10.1.2.3"), "metadata.test": netip.MustParseAddr("169.254.169.254")},
	})
	if err != nil {
		ln.Close()
		return nil, err
	}
	go func() { l.Proxy.Serve(ln); close(l.done) }()
	t, _, err := l.Store.EnsureTenant("golden")
	if err != nil {
		return nil, err
	}
	l.TenantID = t.ID
	return l, nil
}

// Close stops everything StartLocal started.
func (l *Local) Close() {
	if l.Proxy != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		l.Proxy.Shutdown(ctx)
		cancel()
		<-l.done
	}
	if l.Store != nil {
		l.Store.Close()
	}
	if l.Up != nil {
		l.Up.Close()
	}
}
