package vault

import (
	"errors"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Guards against one caller's row too large for a journal record failing the other callers whose rows shared its group.
func TestReviewJournalOversizedRowFailsOnlyItsCaller(t *testing.T) {
	path, key := tempVault(t)
	s := openAt(t, path, key, false)
	// Hold the committer in a sync while the two callers line up, so they
	// are taken into one group.
	var armed atomic.Bool
	entered, release := make(chan struct{}), make(chan struct{})
	old := journalSync
	journalSync = func(f *os.File) error {
		if armed.CompareAndSwap(true, false) {
			close(entered)
			<-release
		}
		return nil
	}
	t.Cleanup(func() { journalSync = old })
	armed.Store(true)
	first := make(chan error, 1)
	go func() { first <- s.AppendAudit(journalRow(0)) }()
	<-entered
	big := journalRow(1)
	big.Host = strings.Repeat("<", journalMaxRecord/6+1) // escaped as \u003c: 6 bytes each
	errBig, errOther := make(chan error, 1), make(chan error, 1)
	go func() { errBig <- s.AppendAudit(big) }()
	go func() { errOther <- s.AppendAudit(journalRow(2)) }()
	time.Sleep(300 * time.Millisecond)
	close(release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if err := <-errBig; !errors.Is(err, ErrInvalid) {
		t.Fatalf("oversized row: %v, want ErrInvalid", err)
	}
	if err := <-errOther; err != nil {
		t.Fatalf("a row of another caller failed with the oversized one: %v", err)
	}
	if got := countAudit(t, s, "ten_j"); got != 2 {
		t.Fatalf("%d rows, want 2", got)
	}
}
