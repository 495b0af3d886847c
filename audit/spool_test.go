package audit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/egressd/egressd/internal/pgtest"
	"github.com/egressd/egressd/vault/pgstore"
	"github.com/egressd/egressd/vault/storage"
)

// tcpGate forwards loopback connections to a server, and can cut them
// all and refuse new ones (cut), then take them again on the same port
// (restore): a store that becomes unreachable for real.
type tcpGate struct {
	target, addr string
	mu           sync.Mutex
	ln           net.Listener
	conns        []net.Conn
	wg           sync.WaitGroup
}

func newTCPGate(tb testing.TB, target string) *tcpGate {
	tb.Helper()
	g := &tcpGate{target: target, addr: "127.0.0.1:0"}
	g.restore(tb)
	tb.Cleanup(func() { g.cut(); g.wg.Wait() })
	return g
}

func (g *tcpGate) restore(tb testing.TB) {
	tb.Helper()
	ln, err := net.Listen("tcp", g.addr)
	if err != nil {
		tb.Fatal(err)
	}
	g.mu.Lock()
	g.ln, g.addr = ln, ln.Addr().String()
	g.mu.Unlock()
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", g.target)
			if err != nil {
				c.Close()
				continue
			}
			g.mu.Lock()
			g.conns = append(g.conns, c, up)
			g.mu.Unlock()
			g.wg.Add(2)
			go func() { defer g.wg.Done(); io.Copy(up, c); up.Close() }()
			go func() { defer g.wg.Done(); io.Copy(c, up); c.Close() }()
		}
	}()
}

// cut closes the listener and every connection through it.
func (g *tcpGate) cut() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ln != nil {
		g.ln.Close()
		g.ln = nil
	}
	for _, c := range g.conns {
		c.Close()
	}
	g.conns = nil
}

// gatedPostgres opens a pgstore in a fresh schema of the test PostgreSQL,
// through a tcpGate.
func gatedPostgres(t *testing.T) (*pgstore.Store, *tcpGate) {
	dsn := testDSN(t)
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	g := newTCPGate(t, net.JoinHostPort(cfg.Host, fmt.Sprint(cfg.Port)))
	host, port, _ := net.SplitHostPort(g.addr)
	q := func(v string) string {
		return "'" + strings.ReplaceAll(strings.ReplaceAll(v, `\`, `\\`), "'", `\'`) + "'"
	}
	gated := fmt.Sprintf("host=%s port=%s user=%s password=%s dbname=%s sslmode=disable", host, port, q(cfg.User), q(cfg.Password), q(cfg.Database))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ps, err := pgstore.Open(ctx, gated, pgstore.Options{Schema: pgtest.FreshSchema(t, dsn, "egressd_at_"), MaxConns: 4, TxTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return ps, g
}

// brokenUpdates fails every Update while broken is set (a bbolt whose
// commits fail: a full or failing disk).
type brokenUpdates struct {
	storage.Backend
	broken atomic.Bool
}

func (b *brokenUpdates) Update(fn func(storage.Tx) error) error {
	if b.broken.Load() {
		return errInjected
	}
	return b.Backend.Update(fn)
}

// While the store cannot take the journaled rows, a node keeps
// acknowledging request rows up to its spool bound, then refuses them
// with ErrUnavailable (and reports the failure); once the store is
// back it ships every row it acknowledged, each once, and takes new ones.
// (The bound counts from the first failed shipment: rows taken before it,
// at most a commit's worth, are over it.)
func TestAuditSpoolBound(t *testing.T) {
	const bound = 40
	cases := map[string]func(t *testing.T) (backend storage.Backend, breakStore, restore func()){
		"bolt": func(t *testing.T) (storage.Backend, func(), func()) {
			b := &brokenUpdates{Backend: openBolt(t, filepath.Join(t.TempDir(), "v.db"), true)}
			return b, func() { b.broken.Store(true) }, func() { b.broken.Store(false) }
		},
	}
	if os.Getenv(pgtest.Env) != "" {
		cases["postgres unreachable"] = func(t *testing.T) (storage.Backend, func(), func()) {
			ps, g := gatedPostgres(t)
			return ps, g.cut, func() { g.restore(t) }
		}
	}
	for name, open := range cases {
		t.Run(name, func(t *testing.T) {
			backend, breakStore, restore := open(t)
			s, err := openCfg(t, "", Config{Backend: backend, JournalPath: filepath.Join(t.TempDir(), "journal"), NodeID: "n1",
				NoSync: true, SpoolMax: bound})
			if err != nil {
				backend.Close()
				t.Fatal(err)
			}
			defer s.Close()
			appendRows(t, s, 0, 10)
			if err := s.Sync(); err != nil {
				t.Fatal(err)
			}
			breakStore()
			acked, i := 10, 10
			var refused error
			for deadline := time.Now().Add(30 * time.Second); refused == nil; i++ {
				if time.Now().After(deadline) {
					t.Fatalf("still acknowledging rows after %d with the store gone (%+v)", acked, s.Shipping())
				}
				if err := s.Append(journalRow(i)); err != nil {
					refused = err
				} else {
					acked++
				}
			}
			sh := s.Shipping()
			if !errors.Is(refused, ErrUnavailable) || sh.Err == nil || sh.Errors == 0 || sh.Spooled < bound || acked < 10+bound {
				t.Fatalf("refused with %v after %d rows; shipping %+v", refused, acked, sh)
			}
			if err := s.AppendLater(journalRow(i)); !errors.Is(err, ErrUnavailable) {
				t.Fatalf("a lazy row while the spool is full: %v", err)
			}
			restore()
			for deadline := time.Now().Add(30 * time.Second); ; {
				if sh := s.Shipping(); sh.Err == nil && sh.Spooled == 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("not caught up after the store came back: %+v", s.Shipping())
				}
				time.Sleep(20 * time.Millisecond) // polls the indexer's retry, with a deadline
			}
			appendRows(t, s, 100000, 100001)
			wantRows(t, s, [2]int{0, acked}, [2]int{100000, 100001})
		})
	}
}
