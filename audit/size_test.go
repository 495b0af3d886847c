package audit

import (
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/egressd/egressd/vault/boltstore"
)

// logBucketStats logs the audit buckets' pages: allocated and in use.
func logBucketStats(t *testing.T, bf *boltstore.Store) {
	bf.DB().View(func(tx *bolt.Tx) error {
		for _, name := range append([][]byte{bAudit}, Buckets()[1:]...) {
			st := tx.Bucket(name).Stats()
			alloc := st.LeafAlloc + st.BranchAlloc
			t.Logf("%-20s %8d keys: %6.1f MB allocated, %5.1f%% in use, %5.0f B/key", name, st.KeyN, float64(alloc)/1e6,
				100*float64(st.LeafInuse+st.BranchInuse)/float64(max(alloc, 1)), float64(alloc)/float64(max(st.KeyN, 1)))
		}
		t.Logf("free pages %d, pending %d", bf.Stats().FreePageN, bf.Stats().PendingPageN)
		return nil
	})
}

// sizeRow is the k-th audit row of tenant t (of tenants), shaped as
// egress-bench -size makes them (cmd/egress-bench/sizegen.go auditRowAt):
// a request of one of the tenant's 10 sandboxes that used one of its 100
// secrets, ids of the vault's own length.
func sizeRow(t, k int, at time.Time) Row {
	id := func(prefix string, n int) string { return fmt.Sprintf("%s_%020d", prefix, n) }
	sbx, sec, o := k%10, k%100, (k%10)%4
	r := Row{
		Time: at, Kind: KindRequest, TenantID: id("ten", t), SandboxID: id("sbx", t*10+sbx),
		WorkspaceID: fmt.Sprintf("w%d", o), OwnerUserID: fmt.Sprintf("u%d", sbx),
		ExternalUserID: fmt.Sprintf("eu%d", o), ExternalWorkspaceID: fmt.Sprintf("ew%d", o),
		SecretID: id("sec", t*100+sec), SecretName: fmt.Sprintf("KEY_%02d", sec%20), SecretVersion: 1, Level: "tenant",
		Host: fmt.Sprintf("api%d.size.test", k%20), Method: "POST", Path: "/v1/chat/completions",
		Status: 200, Outcome: "substituted", DurationMS: float64(100+k%900) / 10,
		Uses: []Use{{Name: fmt.Sprintf("KEY_%02d", sec%20), SecretID: id("sec", t*100+sec), Version: 1, Level: "tenant", Location: "header", Action: "substituted"}},
	}
	if k%20 == 0 {
		r.Status, r.Outcome, r.Reason = 403, "denied", "host_not_allowed"
		r.Uses[0].Action, r.Uses[0].Reason = "denied", "host_not_allowed"
	}
	return r
}

// fillSizeRows appends n rows of tenants tenants from start on, one
// every step, in time order: the tenants interleaved (row i is tenant
// i%tenants's), as a node's proxy writes them.
func fillSizeRows(tb testing.TB, s *testLog, tenants, from, n int, start time.Time, step time.Duration) {
	tb.Helper()
	batch := make([]Row, 0, 1000)
	for i := from; i < from+n; i++ {
		batch = append(batch, sizeRow(i%tenants, i/tenants, start.Add(time.Duration(i)*step)))
		if len(batch) == cap(batch) || i == from+n-1 {
			if err := s.Append(batch...); err != nil {
				tb.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	if err := s.Sync(); err != nil {
		tb.Fatal(err)
	}
}

// TestAuditDiskPerRow measures the bbolt file's bytes per audit row
// (indexes included) at EGRESSD_AUDIT_SIZE_ROWS rows (1000000 for issue
// 15's figure) over EGRESSD_AUDIT_SIZE_TENANTS tenants (default 1000),
// and the file's size after pruning the older half and appending as many
// rows again. Skipped without the variable:
//
//	EGRESSD_AUDIT_SIZE_ROWS=1000000 go test -run TestAuditDiskPerRow -v ./vault/
func TestAuditDiskPerRow(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("EGRESSD_AUDIT_SIZE_ROWS"))
	if n <= 0 {
		t.Skip("set EGRESSD_AUDIT_SIZE_ROWS=1000000 to measure")
	}
	tenants := 1000
	if v, _ := strconv.Atoi(os.Getenv("EGRESSD_AUDIT_SIZE_TENANTS")); v > 0 {
		tenants = v
	}
	s := openTest(t)
	bf := needBoltFile(t, s)
	size := func() int64 {
		fi, err := os.Stat(bf.Path())
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	empty := size()
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	step := 30 * 24 * time.Hour / time.Duration(n) // 30 days of rows
	began := time.Now()
	fillSizeRows(t, s, tenants, 0, n, start, step)
	filled := size()
	t.Logf("%d rows, %d tenants: file %d B (empty vault %d B): %.0f B/row; filled in %v", n, tenants, filled, empty, float64(filled-empty)/float64(n), time.Since(began).Round(time.Millisecond))
	logBucketStats(t, bf)
	deleted, err := s.Prune(start.Add(time.Duration(n/2)*step), 0)
	if err != nil {
		t.Fatal(err)
	}
	pruned := size()
	fillSizeRows(t, s, tenants, n, deleted, start, step)
	refilled := size()
	t.Logf("pruned %d rows: file %d B; %d rows appended again: file %d B (%+.1f%% over the filled file)", deleted, pruned, deleted, refilled, 100*float64(refilled-filled)/float64(filled))
}

// TestAuditPruneReusesPages: after PruneAudit of the older half of the
// rows, appending as many again reuses the pages the prune freed: the
// file grows by less than a fifth (without reuse it would grow by about
// half: the new rows' pages on top of the freed ones).
func TestAuditPruneReusesPages(t *testing.T) {
	s := openTest(t)
	bf := needBoltFile(t, s)
	// The pages in use up to the highest: the file itself grows in steps
	// of bbolt's AllocSize (16 MiB).
	size := func() int64 {
		var n int64
		bf.DB().View(func(tx *bolt.Tx) error { n = tx.Size(); return nil })
		return n
	}
	const n, tenants = 40000, 40
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	fillSizeRows(t, s, tenants, 0, n, start, time.Second)
	filled := size()
	deleted, err := s.Prune(start.Add(n/2*time.Second), 0)
	if err != nil || deleted != n/2 {
		t.Fatalf("pruned %d rows (%v), want %d", deleted, err, n/2)
	}
	pruned := size()
	if os.Getenv("EGRESSD_TEST_HOLD_READER") != "" {
		// A check of this test: a read transaction held open keeps the
		// freed pages from reuse; the test must then fail.
		tx, err := bf.DB().Begin(false)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback()
	}
	fillSizeRows(t, s, tenants, n, n/2, start, time.Second)
	refilled := size()
	t.Logf("file: %d B filled (%d rows), %d B pruned, %d B refilled (%+.1f%%)", filled, n, pruned, refilled, 100*float64(refilled-filled)/float64(filled))
	if refilled > filled+filled/5 {
		t.Fatalf("the file grew from %d to %d B: the pages the prune freed were not reused", filled, refilled)
	}
}
