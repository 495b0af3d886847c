package audit

import (
	"errors"
	"fmt"
	"hash/fnv"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/egressd/egressd/vault/storage"
)

// oldestFirst sorts rows as ExportAudit gives them.
func oldestFirst(rows []Row) []Row {
	out := slices.Clone(rows)
	slices.SortFunc(out, func(a, b Row) int {
		if c := a.Time.Compare(b.Time); c != 0 {
			return c
		}
		if c := strings.Compare(a.ID, b.ID); c != 0 {
			return c
		}
		return strings.Compare(a.TenantID, b.TenantID)
	})
	return out
}

// indexKeys lists every key of the audit index buckets, and the keys
// that rows should have there, built independently of the store's code.
func indexKeys(tb testing.TB, s *testLog, rows []Row) (have, want []string) {
	tb.Helper()
	if err := s.Sync(); err != nil {
		tb.Fatal(err)
	}
	err := s.db.View(func(tx storage.Tx) error {
		if ps := auditTable(s); ps != nil {
			have = tableIndexKeys(tb, ps)
			return nil
		}
		for _, name := range [][]byte{bAuditByExtUser, bAuditByExtWorkspace, bAuditBySandbox, bAuditBySecret} {
			if err := forEachPosting(tx.Bucket(name), func(p, pos []byte) {
				have = append(have, fmt.Sprintf("%s/%q", name, string(p)+string(pos)))
			}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	onTable := auditTable(s) != nil
	for _, r := range rows {
		add := func(bucket, v string) {
			if v != "" {
				// The table's columns, as tableIndexKeys lists them; or
				// the buckets' keys: FNV-1a of tenant \0 value, the time,
				// the id as the row key ends.
				k := r.TenantID + "\x00" + v + "\x00" + string(auditTime(r.Time)) + "\x00" + r.ID
				if !onTable {
					h := fnv.New64a()
					h.Write([]byte(r.TenantID + "\x00" + v))
					k = string(h.Sum(nil)) + string(auditPos(auditTime(r.Time), r.ID))
				}
				if e := fmt.Sprintf("%s/%q", bucket, k); !slices.Contains(want, e) {
					want = append(want, e)
				}
			}
		}
		add("audit_ext_user", r.ExternalUserID)
		add("audit_ext_workspace", r.ExternalWorkspaceID)
		add("audit_sandbox", r.SandboxID)
		add("audit_secret", r.SecretID)
		for _, u := range r.Uses {
			add("audit_secret", u.SecretID)
		}
	}
	slices.Sort(have)
	slices.Sort(want)
	return have, want
}

func TestPruneAudit(t *testing.T) {
	s := openTest(t)
	rows := auditFixture(t, s, 2000)
	if have, want := indexKeys(t, s, rows); !slices.Equal(have, want) {
		t.Fatalf("before: %d index keys, want %d", len(have), len(want))
	}
	cut := auditBase.Add(120 * time.Second)
	var old, keep []Row
	for _, r := range rows {
		if r.Time.Before(cut) {
			old = append(old, r)
		} else {
			keep = append(keep, r)
		}
	}
	if len(old) < 500 || len(keep) < 500 {
		t.Fatalf("fixture: %d old, %d kept", len(old), len(keep))
	}
	n, err := s.Prune(cut, 7)
	if err != nil || n != len(old) {
		t.Fatalf("pruned %d (%v), want %d", n, err, len(old))
	}
	if got := allRows(t, s); !reflect.DeepEqual(got, oldestFirst(keep)) {
		t.Fatalf("%d rows left, want %d", len(got), len(keep))
	}
	if have, want := indexKeys(t, s, keep); !slices.Equal(have, want) {
		t.Fatalf("after: %d index keys, want %d", len(have), len(want))
	}
	// Queries through an index agree.
	got, _ := pages(t, func(f Filter) ([]Row, string, error) { return s.Query("ten_a", f) }, Filter{ExternalUserID: "eu2"})
	if want := bruteAudit(keep, "ten_a", Filter{ExternalUserID: "eu2"}); !reflect.DeepEqual(got, want) {
		t.Fatalf("query after prune: %d rows, want %d", len(got), len(want))
	}
	if n, err := s.Prune(cut, 0); err != nil || n != 0 {
		t.Fatalf("second prune: %d, %v", n, err)
	}
	if n, err := s.Prune(time.Time{}, 10); err != nil || n != 0 {
		t.Fatalf("prune before the zero time: %d, %v", n, err)
	}
	if _, err := s.Prune(cut, -1); !errors.Is(err, ErrInvalid) {
		t.Fatalf("negative batch: %v", err)
	}
	// Everything.
	if n, err := s.Prune(auditBase.Add(time.Hour), 1000); err != nil || n != len(keep) {
		t.Fatalf("prune all: %d (%v), want %d", n, err, len(keep))
	}
	if have, _ := indexKeys(t, s, nil); len(have) != 0 {
		t.Fatalf("%d index keys left", len(have))
	}
}

// TestPruneAuditBounded checks that one transaction deletes at most batch
// rows: a reader running beside the prune sees it part done, and always
// by whole batches.
func TestPruneAuditBounded(t *testing.T) {
	s := openTest(t)
	if s.as != nil {
		t.Skip("an audit store deletes its way (pgstore: whole days' partitions, then one DELETE): batches are the buckets'; TestPruneAuditPartitions checks it")
	}
	rows := auditFixture(t, s, 3000)
	var counts []int
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			s.db.View(func(tx storage.Tx) error {
				counts = append(counts, countKeys(tx.Bucket(bAudit)))
				return nil
			})
		}
	}()
	n, err := s.Prune(auditBase.Add(time.Hour), 10)
	close(stop)
	<-done
	if err != nil || n != len(rows) {
		t.Fatalf("pruned %d (%v)", n, err)
	}
	partial := 0
	for _, c := range counts {
		if c%10 != 0 {
			t.Fatalf("a reader saw %d rows: not whole batches", c)
		}
		if c > 0 && c < len(rows) {
			partial++
		}
	}
	if partial == 0 {
		t.Fatalf("no reader saw a partial prune (%d reads): one transaction?", len(counts))
	}
}

func TestExportAudit(t *testing.T) {
	s := openTest(t)
	rows := auditFixture(t, s, 1400)
	// A third tenant, interleaved in time with the others.
	for i := range 300 {
		tm := auditBase.Add(time.Duration(i%170) * time.Second)
		r := Row{ID: NewID(tm), Time: tm, Kind: KindRequest, TenantID: "ten_c", Path: "/c"}
		rows = append(rows, r)
		if err := s.Append(r); err != nil {
			t.Fatal(err)
		}
	}
	since := auditBase.Add(40 * time.Second)
	for _, tenant := range []string{"", "ten_a", "ten_c", "ten_none"} {
		t.Run("tenant="+tenant, func(t *testing.T) {
			for _, from := range []time.Time{{}, since} {
				var want []Row
				for _, r := range rows {
					if (tenant == "" || r.TenantID == tenant) && !r.Time.Before(from) {
						want = append(want, r)
					}
				}
				want = oldestFirst(want)
				var got []Row
				if err := s.Export(tenant, from, func(r Row) error { got = append(got, r); return nil }); err != nil {
					t.Fatal(err)
				}
				if len(want) == 0 && len(got) == 0 {
					continue
				}
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("since %v: %d rows, want %d%s", from, len(got), len(want), firstDiff(got, want))
				}
			}
		})
	}
	stop := errors.New("stop")
	n := 0
	err := s.Export("", time.Time{}, func(Row) error {
		if n++; n == 600 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || n != 600 {
		t.Fatalf("fn's error: %v after %d rows", err, n)
	}
}

// TestAuditRowReplaced writes a request's provisional row and then its
// final one (same id and time, as the proxy does): one row is left, the
// final one, with the index entries of the final one only; whether the
// indexer had committed the provisional row before (the final one then
// replaces a stored row: its entries kept when they are the same, or
// removed and the final's added) or not, and whether the final row names
// the same secret or another.
func TestAuditRowReplaced(t *testing.T) {
	for _, c := range []struct {
		name            string
		indexed, sameID bool
	}{{"one batch, other secret", false, false}, {"one batch, same ids", false, true}, {"indexed, other secret", true, false}, {"indexed, same ids", true, true}} {
		t.Run(c.name, func(t *testing.T) {
			s := openTest(t)
			tm := auditBase.Add(time.Minute)
			first := Row{ID: "req_0123", Time: tm, Kind: KindRequest, TenantID: "ten_a", SandboxID: "sbx_1", ExternalUserID: "eu1",
				Uses: []Use{{Name: "a", SecretID: "sec_a", Action: "substituted"}}}
			final := first
			final.Status, final.Outcome, final.DurationMS = 200, "substituted", 3.5
			if !c.sameID {
				final.Uses = []Use{{Name: "b", SecretID: "sec_b", Action: "substituted"}}
			}
			if err := s.Append(first); err != nil {
				t.Fatal(err)
			}
			if c.indexed {
				if err := s.Sync(); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Append(final); err != nil {
				t.Fatal(err)
			}
			if got := allRows(t, s); !reflect.DeepEqual(got, []Row{final}) {
				t.Fatalf("rows %+v", got)
			}
			if have, want := indexKeys(t, s, []Row{final}); !slices.Equal(have, want) {
				t.Fatalf("index keys %q, want %q", have, want)
			}
			for _, f := range []Filter{{SecretID: "sec_a"}, {SecretID: "sec_b"}, {SandboxID: "sbx_1"}, {ExternalUserID: "eu1"}} {
				rows, _, err := s.Query("ten_a", f)
				want := f.SecretID != "sec_a" || c.sameID
				if f.SecretID == "sec_b" {
					want = !c.sameID
				}
				if err != nil || (len(rows) == 1) != want || len(rows) > 1 || (want && rows[0].Status != 200) {
					t.Fatalf("filter %+v: %d rows, %v; want them: %v", f, len(rows), err, want)
				}
			}
		})
	}
}
