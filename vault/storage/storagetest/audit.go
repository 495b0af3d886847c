package storagetest

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/egressd/egressd/vault/storage"
)

// testAudit checks a backend that keeps the audit log itself (its
// transactions implement storage.AuditTx); it skips for others.
//   - AppendAudit writes the records and its mark in one transaction; a
//     record of the same tenant, time and id replaces the old one (its
//     filter fields too).
//   - QueryAudit returns one tenant's records matching every filter set,
//     newest first by time (nanoseconds kept) then id, strictly before
//     Before, at most Limit; SecretID matches SecretID or UseSecretIDs.
//   - ScanAudit returns records oldest first by (time, id, tenant), after
//     a position, of one tenant or all, from since on.
//   - PutAudit commits with its Update and not without; in a View it is
//     ErrTxNotWritable.
//   - DeleteAudit deletes every record older than its time, over several
//     days, and counts them; CountAudit counts what is left.
//   - Data comes back byte for byte.
func testAudit(t *testing.T, s storage.Backend) {
	var as storage.AuditStore
	if err := s.View(func(tx storage.Tx) error {
		if atx, ok := tx.(storage.AuditTx); ok {
			as = atx.AuditStore()
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if as == nil {
		t.Skip("the backend keeps no audit log of its own (no storage.AuditTx)")
	}
	meta := []byte("meta")
	ensure(t, s, meta)
	base := time.Date(2026, 3, 1, 22, 0, 0, 0, time.UTC)
	rng := rand.New(rand.NewPCG(7, 14))
	pick := func(vals ...string) string { return vals[rng.IntN(len(vals))] }
	var all []storage.AuditRecord
	for i := range 120 {
		// Six hours apart at most: three days, and ties of one time.
		tm := base.Add(time.Duration(rng.IntN(72*60)) * time.Minute)
		if i%10 == 0 && i > 0 {
			tm = all[i-1].Time // a tie: ordered by id
		}
		if i%17 == 0 && i > 0 {
			tm = all[i-1].Time.Add(time.Nanosecond) // one nanosecond apart
		}
		r := storage.AuditRecord{
			TenantID: pick("ten_a", "ten_b"), Time: tm, ID: fmt.Sprintf("aud_%03d_%s", rng.IntN(1000), pick("A", "b", "_", "-")),
			Kind: pick("request", "request", "admin"), Outcome: pick("", "substituted", "denied"),
			ExternalUserID: pick("", "eu1", "eu2"), ExternalWorkspaceID: pick("", "ew1"),
			SandboxID: pick("", "sbx_1", "sbx_2"), SecretID: pick("", "sec_1", "sec_2"),
		}
		if rng.IntN(4) == 0 {
			r.UseSecretIDs = []string{pick("sec_2", "sec_3")}
			if r.UseSecretIDs[0] == r.SecretID {
				r.UseSecretIDs = nil
			}
		}
		r.Data = fmt.Appendf(nil, `{"id":%q,"n":%d,"bytes":"\u0000\u00ff"}`, r.ID, i)
		all = append(all, r)
	}
	all = dedupAudit(all)
	mark := storage.AuditMark{Bucket: meta, Key: []byte("audit_journal\x00n1"), Value: []byte("position-1")}
	if err := as.AppendAudit(all[:60], mark); err != nil {
		t.Fatalf("AppendAudit: %v", err)
	}
	if err := as.AppendAudit(all[60:], storage.AuditMark{Bucket: meta, Key: mark.Key, Value: []byte("position-2")}); err != nil {
		t.Fatalf("AppendAudit: %v", err)
	}
	view(t, s, func(tx storage.Tx) error {
		if v := tx.Bucket(meta).Get(mark.Key); string(v) != "position-2" {
			t.Errorf("mark %q, want position-2", v)
		}
		return nil
	})

	// A record written again replaces the old one, its filter fields too.
	repl := all[5]
	repl.SecretID, repl.UseSecretIDs, repl.Outcome = "sec_9", []string{"sec_8"}, "replaced"
	repl.Data = []byte(`{"replaced":true}`)
	if err := as.AppendAudit([]storage.AuditRecord{repl}, storage.AuditMark{}); err != nil {
		t.Fatal(err)
	}
	old := all[5]
	all[5] = repl

	check := func(name string, q storage.AuditQuery) {
		t.Helper()
		got, err := as.QueryAudit(q)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if want := queryModel(all, q); !sameAudit(got, want) {
			t.Errorf("%s: got %s, want %s", name, auditIDs(got), auditIDs(want))
		}
	}
	for _, tenant := range []string{"ten_a", "ten_b", "ten_none"} {
		check(tenant+" all", storage.AuditQuery{TenantID: tenant, Limit: 1000})
		check(tenant+" user", storage.AuditQuery{TenantID: tenant, ExternalUserID: "eu1", Limit: 1000})
		check(tenant+" workspace", storage.AuditQuery{TenantID: tenant, ExternalWorkspaceID: "ew1", Limit: 1000})
		check(tenant+" sandbox", storage.AuditQuery{TenantID: tenant, SandboxID: "sbx_2", Limit: 1000})
		for _, sec := range []string{"sec_1", "sec_2", "sec_3", "sec_8", "sec_9"} {
			check(tenant+" "+sec, storage.AuditQuery{TenantID: tenant, SecretID: sec, Limit: 1000})
		}
		check(tenant+" outcome", storage.AuditQuery{TenantID: tenant, Outcome: "denied", Limit: 1000})
		check(tenant+" kind", storage.AuditQuery{TenantID: tenant, Kind: "admin", Limit: 1000})
		check(tenant+" window", storage.AuditQuery{TenantID: tenant, Since: base.Add(20 * time.Hour), Until: base.Add(40 * time.Hour), Limit: 1000})
		check(tenant+" several", storage.AuditQuery{TenantID: tenant, SandboxID: "sbx_1", SecretID: "sec_2", Kind: "request", Limit: 1000})
	}
	if got, _ := as.QueryAudit(storage.AuditQuery{TenantID: old.TenantID, SecretID: old.SecretID, Limit: 1000}); slices.ContainsFunc(got, func(r storage.AuditRecord) bool {
		return r.ID == old.ID && r.Time.Equal(old.Time) && old.SecretID != ""
	}) {
		t.Errorf("the replaced record is still found by its old secret")
	}
	// Pages: every record once, in order, however the limit falls on ties.
	for _, limit := range []int{1, 3, 7} {
		var got []storage.AuditRecord
		q := storage.AuditQuery{TenantID: "ten_a", Limit: limit}
		for {
			page, err := as.QueryAudit(q)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, page...)
			if len(page) < limit {
				break
			}
			last := page[len(page)-1]
			q.Before = storage.AuditPos{Time: last.Time, ID: last.ID}
		}
		if want := queryModel(all, storage.AuditQuery{TenantID: "ten_a", Limit: 1000}); !sameAudit(got, want) {
			t.Errorf("pages of %d: got %s, want %s", limit, auditIDs(got), auditIDs(want))
		}
	}

	// Scans, oldest first, in pages.
	for _, tenant := range []string{"", "ten_b"} {
		for _, since := range []time.Time{{}, base.Add(30 * time.Hour)} {
			var got []storage.AuditRecord
			var after storage.AuditPos
			for {
				page, err := as.ScanAudit(tenant, since, after, 11)
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, page...)
				if len(page) < 11 {
					break
				}
				last := page[len(page)-1]
				after = storage.AuditPos{Time: last.Time, ID: last.ID, Tenant: last.TenantID}
			}
			if want := scanModel(all, tenant, since); !sameAudit(got, want) {
				t.Errorf("scan %q since %v: got %s, want %s", tenant, since, auditIDs(got), auditIDs(want))
			}
		}
	}

	// PutAudit commits with its Update only.
	extra := storage.AuditRecord{TenantID: "ten_a", Time: base.Add(90 * time.Hour), ID: "aud_extra", Kind: "admin", Data: []byte("{}")}
	if err := s.Update(func(tx storage.Tx) error {
		if err := tx.(storage.AuditTx).PutAudit([]storage.AuditRecord{extra}); err != nil {
			return err
		}
		return errBoom
	}); !errors.Is(err, errBoom) {
		t.Fatalf("rolled back Update: %v", err)
	}
	if n, err := as.CountAudit(); err != nil || n != int64(len(all)) {
		t.Fatalf("after a rolled back PutAudit: %d records (%v), want %d", n, err, len(all))
	}
	update(t, s, func(tx storage.Tx) error { return tx.(storage.AuditTx).PutAudit([]storage.AuditRecord{extra}) })
	all = append(all, extra)
	check("after PutAudit", storage.AuditQuery{TenantID: "ten_a", Kind: "admin", Limit: 1000})
	view(t, s, func(tx storage.Tx) error {
		if err := tx.(storage.AuditTx).PutAudit([]storage.AuditRecord{extra}); !errors.Is(err, storage.ErrTxNotWritable) {
			t.Errorf("PutAudit in a View: %v", err)
		}
		return nil
	})

	// DeleteAudit over the days.
	cut := base.Add(50*time.Hour + 30*time.Minute)
	var keep []storage.AuditRecord
	for _, r := range all {
		if !r.Time.Before(cut) {
			keep = append(keep, r)
		}
	}
	n, err := as.DeleteAudit(cut)
	if err != nil || n != int64(len(all)-len(keep)) {
		t.Fatalf("DeleteAudit: %d (%v), want %d", n, err, len(all)-len(keep))
	}
	all = keep
	if c, err := as.CountAudit(); err != nil || c != int64(len(all)) {
		t.Fatalf("CountAudit after DeleteAudit: %d (%v), want %d", c, err, len(all))
	}
	check("after DeleteAudit", storage.AuditQuery{TenantID: "ten_b", Limit: 1000})
	if n, err := as.DeleteAudit(cut); err != nil || n != 0 {
		t.Fatalf("DeleteAudit again: %d (%v)", n, err)
	}
}

// dedupAudit keeps the last record of each (tenant, time, id).
func dedupAudit(rs []storage.AuditRecord) []storage.AuditRecord {
	seen := map[string]int{}
	var out []storage.AuditRecord
	for _, r := range rs {
		k := fmt.Sprint(r.TenantID, r.Time.UnixNano(), r.ID)
		if i, ok := seen[k]; ok {
			out[i] = r
			continue
		}
		seen[k] = len(out)
		out = append(out, r)
	}
	return out
}

func cmpPos(a, b storage.AuditRecord) int {
	if c := a.Time.Compare(b.Time); c != 0 {
		return c
	}
	return strings.Compare(a.ID, b.ID)
}

func queryModel(all []storage.AuditRecord, q storage.AuditQuery) []storage.AuditRecord {
	var out []storage.AuditRecord
	for _, r := range all {
		if r.TenantID != q.TenantID ||
			(!q.Since.IsZero() && r.Time.Before(q.Since)) || (!q.Until.IsZero() && !r.Time.Before(q.Until)) ||
			(q.ExternalUserID != "" && r.ExternalUserID != q.ExternalUserID) ||
			(q.ExternalWorkspaceID != "" && r.ExternalWorkspaceID != q.ExternalWorkspaceID) ||
			(q.SandboxID != "" && r.SandboxID != q.SandboxID) ||
			(q.SecretID != "" && r.SecretID != q.SecretID && !slices.Contains(r.UseSecretIDs, q.SecretID)) ||
			(q.Outcome != "" && r.Outcome != q.Outcome) || (q.Kind != "" && r.Kind != q.Kind) {
			continue
		}
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b storage.AuditRecord) int { return cmpPos(b, a) })
	return out[:min(len(out), q.Limit)]
}

func scanModel(all []storage.AuditRecord, tenant string, since time.Time) []storage.AuditRecord {
	var out []storage.AuditRecord
	for _, r := range all {
		if (tenant == "" || r.TenantID == tenant) && !r.Time.Before(since) {
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b storage.AuditRecord) int {
		if c := cmpPos(a, b); c != 0 {
			return c
		}
		return strings.Compare(a.TenantID, b.TenantID)
	})
	return out
}

// sameAudit compares what a backend must return: tenant, time, id and
// data.
func sameAudit(got, want []storage.AuditRecord) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		g, w := got[i], want[i]
		if g.TenantID != w.TenantID || !g.Time.Equal(w.Time) || g.ID != w.ID || !bytes.Equal(g.Data, w.Data) {
			return false
		}
	}
	return true
}

func auditIDs(rs []storage.AuditRecord) string {
	ids := make([]string, len(rs))
	for i, r := range rs {
		ids[i] = r.TenantID + "/" + r.ID
	}
	return "[" + strings.Join(ids, " ") + "]"
}
