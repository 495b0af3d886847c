package vault

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// SourceIndex finds the sandbox that claims a source address, for the
// transparent listener, without reading the store's claims on every
// connection: it keeps them all in memory (one map lookup per distinct
// prefix length), and marks its table stale on every write the store
// reports (OnChange: this process's writes before they return, other
// replicas' through the change feed).
//
// What it finds is checked against the sandbox as stored now (one read,
// as authenticating a proxy token costs): a sandbox that has since let
// the address go is never answered, whatever the table said, so a table
// that lags a write (stale, the feed's delivery, or a write between
// commit and its OnChange) can only miss a new claim, never misattribute
// an old one (claims never overlap: while the sandbox found still claims
// the address, no other can). So a stale table still answers the sources
// it finds; it is built again when a lookup misses or its claim fails the
// check, not after every write: a build reads every claim (about 5 ms at
// 10,000, BenchmarkSourceIndexRebuild), and the vault notifies for every
// write of any tenant. A miss in a table that is not stale rebuilds it at
// most once every MinRebuild, so a source that no sandbox claims cannot
// make every connection read the store. While the store cannot vouch that
// it hears every write (ChangesHealthy false) every lookup rebuilds.
type SourceIndex struct {
	store *Store
	gen   atomic.Uint64
	table atomic.Pointer[sourceTable]

	mu          sync.Mutex // one rebuild at a time
	lastRebuild time.Time
}

// MinRebuild is how often, at most, a lookup that found no claim rebuilds
// the SourceIndex's table to look again.
const MinRebuild = time.Second

// ErrUnknownSource is returned by SourceIndex.Lookup when no sandbox
// claims the address. It is an ErrNotFound.
var ErrUnknownSource = fmt.Errorf("no sandbox claims this source address: %w", ErrNotFound)

type sourceTable struct {
	gen    uint64
	claims map[netip.Prefix]SourceClaim
	// bits4 and bits6 are the prefix lengths in claims, longest first.
	bits4, bits6 []int
}

// NewSourceIndex returns the index of s's source claims, subscribed to
// its writes.
func NewSourceIndex(s *Store) *SourceIndex {
	x := &SourceIndex{store: s}
	s.OnChange(func(string) { x.gen.Add(1) })
	return x
}

// Lookup returns the sandbox whose source_addrs hold addr (an IPv4-mapped
// address counts as its IPv4 form), as stored now; ErrUnknownSource when
// none does.
func (x *SourceIndex) Lookup(addr netip.Addr) (Sandbox, error) {
	addr = addr.Unmap().WithZone("")
	if !addr.IsValid() {
		return Sandbox{}, ErrUnknownSource
	}
	t, err := x.current(wantAny)
	if err != nil {
		return Sandbox{}, err
	}
	for try := 0; ; try++ {
		c, ok := t.find(addr)
		if ok {
			sbx, err := x.store.SandboxClaiming(c.TenantID, c.SandboxID, addr)
			if err == nil {
				return sbx, nil
			}
			if !errors.Is(err, ErrNotFound) {
				return Sandbox{}, err
			}
		}
		if try > 0 {
			return Sandbox{}, ErrUnknownSource
		}
		// The table may lag a write: look again in a new one, at most
		// once every MinRebuild for an address that nobody claims (a
		// claim that failed its check rebuilds at once: a write happened).
		w := wantAfterMiss
		if ok {
			w = wantRebuilt
		}
		if t, err = x.current(w); err != nil {
			return Sandbox{}, err
		}
		if t == nil {
			return Sandbox{}, ErrUnknownSource
		}
	}
}

// want says which table Lookup asks current for.
type want int

const (
	// wantAny: the table, stale or not, built if there is none or the
	// store may have missed a write.
	wantAny want = iota
	// wantAfterMiss: a new table after a lookup found no claim, unless
	// the last was built within MinRebuild (then nil).
	wantAfterMiss
	// wantRebuilt: a new table, after a claim failed its check (a write
	// happened).
	wantRebuilt
)

func (x *SourceIndex) current(w want) (*sourceTable, error) {
	valid := func(t *sourceTable) bool {
		return t != nil && t.gen == x.gen.Load() && x.store.ChangesHealthy()
	}
	usable := func(t *sourceTable) bool {
		return t != nil && x.store.ChangesHealthy()
	}
	if t := x.table.Load(); w == wantAny && usable(t) {
		return t, nil
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	t := x.table.Load()
	switch {
	case w == wantAny && usable(t):
		return t, nil // another lookup built it meanwhile
	case w == wantAfterMiss && valid(t) && time.Since(x.lastRebuild) < MinRebuild:
		return nil, nil
	}
	t, err := x.build()
	if err != nil {
		return nil, err
	}
	x.lastRebuild = time.Now()
	x.table.Store(t)
	return t, nil
}

// build reads every claim. The generation is read first: a write that
// commits after it makes the new table stale at once.
func (x *SourceIndex) build() (*sourceTable, error) {
	gen := x.gen.Load()
	cs, err := x.store.SourceClaims()
	if err != nil {
		return nil, err
	}
	return newSourceTable(gen, cs), nil
}

func newSourceTable(gen uint64, cs []SourceClaim) *sourceTable {
	t := &sourceTable{gen: gen, claims: make(map[netip.Prefix]SourceClaim, len(cs))}
	for _, c := range cs {
		p := c.Prefix.Masked()
		t.claims[p] = c
		if p.Addr().Is4() {
			if !slices.Contains(t.bits4, p.Bits()) {
				t.bits4 = append(t.bits4, p.Bits())
			}
		} else if !slices.Contains(t.bits6, p.Bits()) {
			t.bits6 = append(t.bits6, p.Bits())
		}
	}
	desc := func(a, b int) int { return b - a }
	slices.SortFunc(t.bits4, desc)
	slices.SortFunc(t.bits6, desc)
	return t
}

// find returns the claim that holds addr (claims never overlap, so there
// is at most one).
func (t *sourceTable) find(addr netip.Addr) (SourceClaim, bool) {
	bits := t.bits6
	if addr.Is4() {
		bits = t.bits4
	}
	for _, b := range bits {
		p, err := addr.Prefix(b)
		if err != nil {
			continue
		}
		if c, ok := t.claims[p]; ok {
			return c, true
		}
	}
	return SourceClaim{}, false
}
