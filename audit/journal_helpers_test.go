package audit

import (
	"os"
	"sync"
	"testing"
	"time"
)

// crash stops s the way a killed process leaves its files: the committer
// and the indexer stop (what the indexer held is committed, as if it had
// committed just before the kill), and the journal and the bbolt file are
// closed with nothing else written: no rewind. A later Close is a no-op.
func crash(tb testing.TB, s *testLog) {
	tb.Helper()
	s.once.Do(func() {
		close(s.stop)
		<-s.done
		if err := s.idx.close(); err != nil {
			tb.Logf("crash: the indexer's last commit: %v", err)
		}
		s.j.close()
	})
	s.db.Close()
}

// journalAppend writes rows to the journal at path as the committer
// would (one group, synced), with no indexer behind it: a crash after
// this leaves them in the journal only.
func journalAppend(tb testing.TB, path string, rows ...Row) {
	tb.Helper()
	j, _, err := openJournal(path, true)
	if err != nil {
		tb.Fatal(err)
	}
	defer j.close()
	var group [][]byte
	for i := range rows {
		e, err := rows[i].prepare(time.Now)
		if err != nil {
			tb.Fatal(err)
		}
		group = append(group, e.val)
	}
	if err := j.append(group, true); err != nil {
		tb.Fatal(err)
	}
}

// disk models the journal's durable contents: what the last successful
// sync saw. A power loss puts the file back to it. fail makes syncs fail.
type disk struct {
	mu     sync.Mutex
	synced []byte
	syncs  int
	fail   error
}

// useDisk replaces journalSync with d for the test.
func useDisk(tb testing.TB) *disk {
	d := &disk{}
	old := journalSync
	journalSync = func(f *os.File) error {
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.fail != nil {
			return d.fail
		}
		fi, err := f.Stat()
		if err != nil {
			return err
		}
		buf := make([]byte, fi.Size())
		if _, err := f.ReadAt(buf, 0); err != nil {
			return err
		}
		d.synced, d.syncs = buf, d.syncs+1
		return nil
	}
	tb.Cleanup(func() { journalSync = old })
	return d
}

func (d *disk) setFail(err error) {
	d.mu.Lock()
	d.fail = err
	d.mu.Unlock()
}

// powerLoss puts the journal at path back to what was synced.
func (d *disk) powerLoss(tb testing.TB, path string) {
	tb.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := os.WriteFile(path, d.synced, 0o600); err != nil {
		tb.Fatal(err)
	}
}

// getRow reads one row of tenant by id through Query.
func getRow(tb testing.TB, s *testLog, tenant, id string) (Row, int) {
	tb.Helper()
	var found Row
	n := 0
	for _, r := range allAudit(tb, s, tenant) {
		if r.ID == id {
			found = r
			n++
		}
	}
	return found, n
}
