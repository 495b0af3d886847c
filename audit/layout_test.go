package audit

import (
	"encoding/json"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/egressd/egressd/vault/storage"
)

// TestAuditLayoutMigrated: a vault whose audit buckets were written
// before layout 2 (JSON rows, ids as text in the keys) opens with every
// row moved to layout 2 (or, on a backend with an audit table, into it),
// found by every index, and no key of the old layout left.
func TestAuditLayoutMigrated(t *testing.T) {
	s := openTest(t)
	path := s.Path()
	var rows []Row
	for i := range 2*auditMigrateChunk + 500 {
		tm := auditBase.Add(time.Duration(i%700) * time.Second)
		r := Row{ID: NewID(tm), Time: tm, Kind: KindRequest, TenantID: []string{"ten_a", "ten_b", "ten_c"}[i%3],
			ExternalUserID: []string{"", "eu1", "eu2"}[i%3], SandboxID: []string{"sbx_1", "sbx_2"}[i%2], Outcome: "substituted",
			Uses: []Use{{Name: "k", SecretID: []string{"sec_1", "sec_2", "sec_3"}[i%3]}}}
		if i%5 == 0 {
			r.ID = "req_" + string(rune('a'+i%26)) // an id of a caller's own
		}
		if _, err := r.prepare(time.Now); err != nil {
			t.Fatal(err)
		}
		rows = append(rows, r)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	updateClosed(t, path, func(tx storage.Tx) error {
		if err := tx.Bucket(bMeta).Delete(metaAuditLayout); err != nil {
			return err
		}
		for _, r := range rows {
			v, err := json.Marshal(&r)
			if err != nil {
				return err
			}
			tb := auditTime(r.Time)
			if err := tx.Bucket(bAudit).Put(legacyAuditKey(r.TenantID, tb, r.ID), v); err != nil {
				return err
			}
			for _, ix := range auditIndexes {
				for _, val := range ix.values(&r, nil) {
					if err := tx.Bucket(ix.bucket).Put(legacyAuditKey(r.TenantID+"\x00"+val, tb, r.ID), nil); err != nil {
						return err
					}
				}
			}
		}
		return nil
	})
	s = openAt(t, path, true)
	if have, want := indexKeys(t, s, rows); !slices.Equal(have, want) {
		t.Fatalf("%d index keys, want %d", len(have), len(want))
	}
	if err := s.db.View(func(tx storage.Tx) error {
		return tx.Bucket(bAudit).ForEach(func(k, _ []byte) error {
			if isLegacyRowKey(k) {
				t.Errorf("a key of layout 1 is left: %q", k)
			}
			return nil
		})
	}); err != nil {
		t.Fatal(err)
	}
	for _, f := range []Filter{{}, {SandboxID: "sbx_2"}, {ExternalUserID: "eu1"}, {SecretID: "sec_3"}} {
		for _, tenant := range []string{"ten_a", "ten_b", "ten_c"} {
			var want []Row
			for _, r := range rows {
				if r.TenantID == tenant && f.match(&r) {
					want = append(want, r)
				}
			}
			slices.SortFunc(want, func(a, b Row) int {
				if c := b.Time.Compare(a.Time); c != 0 {
					return c
				}
				return compareAuditIDs(a, b)
			})
			var got []Row
			for f.Limit = 100; ; {
				page, next, err := s.Query(tenant, f)
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, page...)
				if next == "" {
					break
				}
				f.Cursor = next
			}
			f.Cursor = ""
			if len(got) != len(want) {
				t.Fatalf("%s %+v: %d rows, want %d", tenant, f, len(got), len(want))
			}
			for i := range got {
				if !reflect.DeepEqual(mustJSON(t, &got[i]), mustJSON(t, &want[i])) {
					t.Fatalf("%s %+v: row %d is %s, want %s", tenant, f, i, mustJSON(t, &got[i]), mustJSON(t, &want[i]))
				}
			}
		}
	}
}

// compareAuditIDs orders two rows of one time as a page does: newest
// first, by the id as the keys hold it (the table's order: the id text).
func compareAuditIDs(a, b Row) int {
	pa, pb := auditPos(auditTime(a.Time), a.ID), auditPos(auditTime(b.Time), b.ID)
	if onPostgres() {
		pa, pb = []byte(a.ID), []byte(b.ID)
	}
	return -slices.Compare(pa, pb)
}
