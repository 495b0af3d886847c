package proxy

import (
	"context"
	"net"
	"sync"
	"time"
)

// trackedConn is a client connection. Reads and writes push its deadline
// forward by the idle timeout (at most every idle/64), so a connection
// that goes quiet (during the TLS handshake, between requests, or in a
// tunnel) is closed, whoever reads it. It also counts against its
// sandbox's connection limit once the sandbox is known.
type trackedConn struct {
	net.Conn
	p    *Proxy
	idle time.Duration

	once    sync.Once
	mu      sync.Mutex
	sandbox string
	tunnel  bool
	// challenges counts the 407s asking for credentials (challenge).
	challenges int

	// dmu orders deadline changes: net/http aborts a pending background
	// read by setting a past deadline, and a Read must never push that
	// deadline into the future again (it would swallow the next byte).
	dmu           sync.Mutex
	readDeadline  time.Time
	writeDeadline time.Time
	// readPushed and writePushed are when the idle deadline was last
	// pushed (zero: it must be, an explicit deadline was set since). A
	// push moves a runtime timer; one every idle/64 keeps the timeout
	// within 2% of its setting at a fraction of the cost of one per read
	// and write.
	readPushed  time.Time
	writePushed time.Time
	// authBy, once credentials were asked for, caps every read deadline
	// until a sandbox authenticates on the connection (zero: no cap).
	authBy time.Time
}

// pushEvery is how stale the idle deadline may get before a read or write
// pushes it again.
func (c *trackedConn) pushEvery() time.Duration { return c.idle / 64 }

func (c *trackedConn) Read(b []byte) (int, error) {
	c.pushReadDeadline()
	return c.Conn.Read(b)
}

// pushReadDeadline moves the idle deadline on before a read (every
// pushEvery at most); a pass-through tunnel's relayReader, which reads the
// connection under c, calls it too.
func (c *trackedConn) pushReadDeadline() {
	if c.idle > 0 {
		now := time.Now()
		c.dmu.Lock()
		if now.Sub(c.readPushed) >= c.pushEvery() {
			c.Conn.SetReadDeadline(c.capped(earliest(c.readDeadline, now.Add(c.idle))))
			c.readPushed = now
		}
		c.dmu.Unlock()
	}
}

func (c *trackedConn) Write(b []byte) (int, error) {
	if c.idle > 0 {
		now := time.Now()
		c.dmu.Lock()
		if now.Sub(c.writePushed) >= c.pushEvery() {
			c.Conn.SetWriteDeadline(earliest(c.writeDeadline, now.Add(c.idle)))
			c.writePushed = now
		}
		c.dmu.Unlock()
	}
	return c.Conn.Write(b)
}

func (c *trackedConn) SetDeadline(t time.Time) error {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	c.readDeadline, c.writeDeadline = t, t
	c.readPushed, c.writePushed = time.Time{}, time.Time{}
	if !c.authBy.IsZero() {
		c.Conn.SetWriteDeadline(t)
		return c.Conn.SetReadDeadline(c.capped(t))
	}
	return c.Conn.SetDeadline(t)
}

func (c *trackedConn) SetReadDeadline(t time.Time) error {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	c.readDeadline = t
	c.readPushed = time.Time{}
	return c.Conn.SetReadDeadline(c.capped(t))
}

// capped is t, or authBy when that comes first (t zero: no deadline).
// Callers hold dmu.
func (c *trackedConn) capped(t time.Time) time.Time {
	if c.authBy.IsZero() || (!t.IsZero() && t.Before(c.authBy)) {
		return t
	}
	return c.authBy
}

// challenged notes a 407 that asks for credentials: the next request must
// come by the deadline by. It reports whether the connection may stay open
// for it (false past maxChallenges, or once a sandbox owns it).
func (c *trackedConn) challenged(by time.Time) bool {
	c.mu.Lock()
	c.challenges++
	ok := c.challenges <= maxChallenges && c.sandbox == ""
	c.mu.Unlock()
	c.dmu.Lock()
	c.authBy = by
	c.Conn.SetReadDeadline(c.capped(c.readDeadline))
	c.readPushed = time.Time{}
	c.dmu.Unlock()
	return ok
}

func (c *trackedConn) SetWriteDeadline(t time.Time) error {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	c.writeDeadline = t
	c.writePushed = time.Time{}
	return c.Conn.SetWriteDeadline(t)
}

// earliest is the sooner of an explicit deadline (zero: none) and the idle one.
func earliest(explicit, idle time.Time) time.Time {
	if !explicit.IsZero() && explicit.Before(idle) {
		return explicit
	}
	return idle
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.p.metrics.conns.Dec()
		c.mu.Lock()
		sbx, tunnel := c.sandbox, c.tunnel
		c.mu.Unlock()
		if sbx != "" {
			c.p.limits.release(sbx)
		}
		if tunnel {
			c.p.metrics.tunnels.Dec()
		}
	})
	return c.Conn.Close()
}

// claim counts the connection against sandbox; false if it is over its limit.
func (c *trackedConn) claim(sandbox string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sandbox != "" {
		return c.sandbox == sandbox
	}
	if !c.p.limits.acquire(sandbox) {
		return false
	}
	c.sandbox = sandbox
	c.dmu.Lock()
	c.authBy = time.Time{} // the retry came: the usual deadlines again
	c.readPushed = time.Time{}
	c.dmu.Unlock()
	return true
}

func (c *trackedConn) markTunnel() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.tunnel {
		c.tunnel = true
		c.p.metrics.tunnels.Inc()
	}
}

// listener wraps accepted connections in trackedConn.
type listener struct {
	net.Listener
	p *Proxy
}

func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.p.metrics.conns.Inc()
	return &trackedConn{Conn: c, p: l.p, idle: l.p.cfg.IdleTimeout}, nil
}

type connKey struct{}

func withConn(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, connKey{}, c)
}

func connFrom(ctx context.Context) *trackedConn {
	c, _ := ctx.Value(connKey{}).(*trackedConn)
	return c
}

// limits counts open connections per sandbox.
type limits struct {
	max int
	mu  sync.Mutex
	n   map[string]int
}

func (l *limits) acquire(sandbox string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.max > 0 && l.n[sandbox] >= l.max {
		return false
	}
	l.n[sandbox]++
	return true
}

func (l *limits) release(sandbox string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n[sandbox]--; l.n[sandbox] <= 0 {
		delete(l.n, sandbox)
	}
}
