package audit

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/egressd/egressd/vault/boltstore"
)

// allAudit reads every row of the tenant through QueryAudit, page by page.
func allAudit(tb testing.TB, s *testLog, tenant string) []Row {
	tb.Helper()
	rows, _ := pages(tb, func(f Filter) ([]Row, string, error) { return s.Query(tenant, f) }, Filter{Limit: MaxLimit})
	return rows
}

// countAudit counts the tenant's rows through QueryAudit, page by page.
func countAudit(tb testing.TB, s *testLog, tenant string) int {
	tb.Helper()
	return len(allAudit(tb, s, tenant))
}

func journalRow(i int) Row {
	t := auditBase.Add(time.Duration(i) * time.Millisecond)
	return Row{
		ID: fmt.Sprintf("req_%06d", i), Time: t, Kind: KindRequest, TenantID: "ten_j",
		ExternalUserID: fmt.Sprintf("eu_%d", i%7), SandboxID: fmt.Sprintf("sbx_%d", i%5),
		SecretID: "sec_1", Outcome: "substituted", Host: "api.example.com", Method: "POST", Path: "/v1/x",
	}
}

// A crash leaves acknowledged rows in the journal only: the next Open puts
// them into bbolt, ignores a torn last record, and does not replay them a
// second time.
func TestAuditJournalReplayAfterCrash(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vault.db")
	s, err := openCfg(t, path, Config{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// What the committer writes, with no indexer behind it: the process
	// died before any of it reached bbolt.
	j, payloads, err := openJournal(path+".audit-journal", true)
	if err != nil || len(payloads) != 0 {
		t.Fatalf("journal after a clean close: %d records, %v", len(payloads), err)
	}
	const n = 300
	for i := 0; i < n; i += 30 {
		var group [][]byte
		for k := i; k < i+30; k++ {
			r := journalRow(k)
			if k == 7 {
				r.Outcome = "denied" // the provisional row of 7, replaced below
			}
			e, err := r.prepare(time.Now)
			if err != nil {
				t.Fatal(err)
			}
			group = append(group, e.val)
		}
		if err := j.append(group, true); err != nil {
			t.Fatal(err)
		}
	}
	final := journalRow(7)
	e, _ := final.prepare(time.Now)
	if err := j.append([][]byte{e.val}, true); err != nil {
		t.Fatal(err)
	}
	// A torn record: its length is written, not all of its bytes.
	torn := journalRow(n)
	e, _ = torn.prepare(time.Now)
	if err := j.append([][]byte{e.val}, true); err != nil {
		t.Fatal(err)
	}
	j.off -= int64(len(e.val)) / 2
	if _, err := j.f.WriteAt(make([]byte, len(e.val)), j.off); err != nil {
		t.Fatal(err)
	}
	j.close()

	for round := range 2 {
		s, err := openCfg(t, path, Config{NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		if got := countAudit(t, s, "ten_j"); got != n {
			t.Fatalf("round %d: %d rows after reopening, want %d", round, got, n)
		}
		rows, _, err := s.Query("ten_j", Filter{Outcome: "denied"})
		if err != nil || len(rows) != 0 {
			t.Fatalf("round %d: the provisional row was not replaced by its final one: %d denied rows, %v", round, len(rows), err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		// Rewound: the old records belong to an older epoch.
		j, payloads, err := openJournal(path+".audit-journal", true)
		if err != nil || len(payloads) != 0 {
			t.Fatalf("round %d: journal holds %d records after a clean reopen (%v)", round, len(payloads), err)
		}
		j.close()
	}
}

// Past journalWrapAt the journal is rewound once the indexer has committed
// everything: it stays at its preallocated size, and no row is lost or
// written twice, across a reopen too.
func TestAuditJournalRewinds(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vault.db")
	s, err := openCfg(t, path, Config{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	r0 := journalRow(0)
	row, _ := r0.prepare(time.Now)
	n := 3 * journalWrapAt / (len(row.val) + journalRecHeaderLen)
	for i := 0; i < n; i += 100 {
		group := make([]Row, 0, 100)
		for k := i; k < min(i+100, n); k++ {
			group = append(group, journalRow(k))
		}
		if err := s.Append(group...); err != nil {
			t.Fatal(err)
		}
	}
	if s.j.epoch < 3 {
		t.Fatalf("epoch %d after writing 3× the wrap size: the journal was not rewound", s.j.epoch)
	}
	if fi, err := os.Stat(path + ".audit-journal"); err != nil || fi.Size() != journalPrealloc {
		t.Fatalf("journal size %v (%v), want %d", fi.Size(), err, journalPrealloc)
	}
	if got := countAudit(t, s, "ten_j"); got != n {
		t.Fatalf("%d rows, want %d", got, n)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = openCfg(t, path, Config{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := countAudit(t, s, "ten_j"); got != n {
		t.Fatalf("after reopening: %d rows, want %d", got, n)
	}
}

// A file that is not a journal is refused, not overwritten.
func TestAuditJournalForeignFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vault.db")
	if err := os.WriteFile(path+".audit-journal", []byte("not a journal at all"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := openCfg(t, path, Config{NoSync: true})
	if err == nil {
		t.Fatal("opened with a foreign journal file")
	}
	if b, _ := os.ReadFile(path + ".audit-journal"); string(b) != "not a journal at all" {
		t.Fatalf("the foreign file was changed: %q", b)
	}
	// And the bbolt file's lock was released.
	db, err := boltstore.Open(path, boltstore.Options{Timeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
}

// Rows are visible to QueryAudit as soon as AppendAudit (or
// AppendAuditLater) returned, without waiting for the indexer's timer, and
// are all there after a reopen.
func TestAuditReadYourWrites(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vault.db")
	s, err := openCfg(t, path, Config{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		write := s.Append
		if i%3 != 0 {
			write = s.AppendLater
		}
		if err := write(journalRow(i)); err != nil {
			t.Fatal(err)
		}
		if got := countAudit(t, s, "ten_j"); got != i+1 {
			t.Fatalf("after %d appends QueryAudit sees %d rows", i+1, got)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Query("ten_j", Filter{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("query after close: %v", err)
	}
	s, err = openCfg(t, path, Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := countAudit(t, s, "ten_j"); got != 50 {
		t.Fatalf("after reopening: %d rows, want 50", got)
	}
}

// A journal created (or grown to its size) is fsync'd with its directory
// before the first row relies on it; one reopened as it was is not.
func TestJournalCreationSyncsDirectory(t *testing.T) {
	var dirs []string
	old := journalSyncDir
	journalSyncDir = func(dir string) error { dirs = append(dirs, dir); return old(dir) }
	t.Cleanup(func() { journalSyncDir = old })
	path := filepath.Join(t.TempDir(), "vault.db")
	open := func() *testLog {
		s, err := openCfg(t, path, Config{})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	open().Close()
	if len(dirs) != 1 || dirs[0] != filepath.Dir(path) {
		t.Fatalf("directory syncs on creation: %v", dirs)
	}
	open().Close()
	if len(dirs) != 1 {
		t.Fatalf("directory synced again on reopen: %v", dirs)
	}
}
