package audit

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
	path := tempPath(t)
	s := openAt(t, path, false)
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
	go func() { first <- s.Append(journalRow(0)) }()
	<-entered
	big := journalRow(1)
	big.Host = strings.Repeat("<", journalMaxRecord+1)
	errBig, errOther := make(chan error, 1), make(chan error, 1)
	go func() { errBig <- s.Append(big) }()
	go func() { errOther <- s.Append(journalRow(2)) }()
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

// Guards against a journal left by a newer egressd being called foreign, with advice (move it away) that would lose its unindexed rows.
func TestReviewJournalNewerFormat(t *testing.T) {
	path := tempPath(t)
	jpath := path + ".audit-journal"
	content := append([]byte("EGAJRNL2"), make([]byte, 64)...)
	content[8] = 7
	if err := os.WriteFile(jpath, content, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := openCfg(t, path, Config{NoSync: true})
	if err == nil {
		t.Fatal("opened with a journal of another format")
	}
	if msg := err.Error(); !strings.Contains(msg, "newer egressd") || !strings.Contains(msg, "stop that version cleanly") {
		t.Fatalf("error %q: it should say the journal is of a newer egressd whose rows may not be in the vault", msg)
	}
	if b, _ := os.ReadFile(jpath); string(b) != string(content) {
		t.Fatal("the journal was changed")
	}
}
