package pgstore

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/egressd/egressd/vault/storage"
)

// Replicas that ship rows of the same new days at once each make the
// partitions they lack under one lock: every shipment succeeds, and each
// day has one partition.
func TestAuditPartitionsConcurrent(t *testing.T) {
	schema := freshSchema(t, testDSN(t))
	const replicas = 4
	stores := make([]*Store, replicas)
	for i := range stores {
		stores[i] = openTest(t, Options{Schema: schema})
	}
	if err := stores[0].EnsureBuckets([]byte("meta")); err != nil {
		t.Fatal(err)
	}
	start := time.Date(2024, 5, 1, 23, 0, 0, 0, time.UTC)
	var wg sync.WaitGroup
	errs := make(chan error, replicas)
	for i, s := range stores {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// 240 records an hour apart: ten days, the same ones for each
			// replica, ids of its own.
			recs := benchRecords(start, i*1000, 240)
			for k := range recs {
				recs[k].Time = start.Add(time.Duration(k) * time.Hour)
			}
			errs <- s.AppendAudit(recs, storage.AuditMark{Bucket: []byte("meta"), Key: []byte{byte('a' + i)}, Value: []byte("p")})
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := stores[0]
	rows, err := s.Pool().Query(ctx, s.aq.partitions, s.aq.table)
	if err != nil {
		t.Fatal(err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, n := range names {
		if seen[n] {
			t.Fatalf("partition %s twice", n)
		}
		seen[n] = true
	}
	for d := start; d.Before(start.Add(240 * time.Hour)); d = d.Add(24 * time.Hour) {
		if n := partitionName(dayOf(d)); !seen[n] {
			t.Errorf("no partition %s among %v", n, names)
		}
	}
	if n, err := s.CountAudit(); err != nil || n != replicas*240 {
		t.Fatalf("%d rows (%v), want %d", n, err, replicas*240)
	}
}

// Every row shipped is in the table as its last version, whichever way
// AppendAudit took it: a row written twice in one batch, a provisional
// row's final one in a later batch (an upsert: older than the newest row
// shipped), a row older than that never shipped, and the rows a replica
// ships again after a restart (it knows of no row shipped: COPY meets
// the rows there and the batch is written again as upserts).
func TestAppendAuditReplaces(t *testing.T) {
	schema := freshSchema(t, testDSN(t))
	s := openTest(t, Options{Schema: schema})
	if err := s.EnsureBuckets([]byte("meta")); err != nil {
		t.Fatal(err)
	}
	mark := storage.AuditMark{Bucket: []byte("meta"), Key: []byte("pos"), Value: []byte("1")}
	start := time.Now().Add(-time.Hour).UTC()
	recs := benchRecords(start, 0, 10)
	version := func(r storage.AuditRecord, v string) storage.AuditRecord {
		r.Outcome, r.Data = v, append([]byte("version "+v+";"), r.Data...)
		return r
	}
	ship := func(s *Store, batch ...storage.AuditRecord) {
		t.Helper()
		if err := s.AppendAudit(batch, mark); err != nil {
			t.Fatal(err)
		}
	}
	// Rows 2 to 9, row 4 twice in the batch.
	ship(s, recs[2], version(recs[4], "provisional"), recs[3], version(recs[4], "first"), recs[5], recs[6], recs[7], recs[8], recs[9])
	// Row 4's final version, a never shipped row 0 older than the newest
	// shipped, and row 1 twice.
	ship(s, version(recs[1], "provisional"), version(recs[4], "final"), recs[0], version(recs[1], "final"))
	// Another replica of the same node after a restart: rows 5 to 9 again,
	// 9 as a new version.
	s2 := openTest(t, Options{Schema: schema})
	ship(s2, recs[5], recs[6], recs[7], recs[8], version(recs[9], "final"))

	if n, err := s.CountAudit(); err != nil || n != 10 {
		t.Fatalf("%d rows (%v), want 10", n, err)
	}
	want := map[string]string{recs[1].ID: "final", recs[4].ID: "final", recs[9].ID: "final"}
	for tenant := range 4 {
		got, err := s.ScanAudit(fmt.Sprintf("ten_%d", tenant), time.Time{}, storage.AuditPos{}, 100)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range got {
			v, _, _ := strings.Cut(strings.TrimPrefix(string(r.Data), "version "), ";")
			if w := want[r.ID]; w != "" && v != w {
				t.Errorf("row %s is its %q version, want %q", r.ID, v, w)
			}
			if want[r.ID] == "" && strings.HasPrefix(string(r.Data), "version ") {
				t.Errorf("row %s is its %q version, want its only one", r.ID, v)
			}
			delete(want, r.ID)
		}
	}
	if len(want) != 0 {
		t.Errorf("rows %v missing", want)
	}
	// Outcome is replaced with the row: the query by outcome finds the
	// final version only.
	q, err := s.QueryAudit(storage.AuditQuery{TenantID: recs[4].TenantID, Outcome: "first", Limit: 10})
	if err != nil || len(q) != 0 {
		t.Errorf("query by the replaced outcome: %d rows (%v), want none", len(q), err)
	}
}

// A request's final row shipped a batch after its provisional one stays
// on the provisional row's page (a heap-only update, no index entry):
// partitions keep room on each page for it (fillfactor 90), those made
// before migration 0004 too.
func TestAuditFinalRowOnItsPage(t *testing.T) {
	schema := freshSchema(t, testDSN(t))
	s := openTest(t, Options{Schema: schema})
	if err := s.EnsureBuckets([]byte("meta")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	mark := storage.AuditMark{Bucket: []byte("meta"), Key: []byte("pos"), Value: []byte("1")}
	start := time.Now().Add(-time.Hour).UTC()
	page := func(r storage.AuditRecord) (block int) {
		t.Helper()
		err := s.pool.QueryRow(ctx, "SELECT (ctid::text::point)[0]::int FROM "+s.aq.table+" WHERE tenant_id = $1 AND ns = $2 AND id = $3",
			r.TenantID, r.Time.UnixNano(), r.ID).Scan(&block)
		if err != nil {
			t.Fatal(err)
		}
		return block
	}
	for round, setup := range []string{
		"",
		// A schema migrated before 0004: its partitions without room,
		// until the migration runs again (with those after it).
		"DO $$ DECLARE p regclass; BEGIN FOR p IN SELECT inhrelid::regclass FROM pg_inherits WHERE inhparent = 'audit'::regclass LOOP " +
			"EXECUTE format('ALTER TABLE %s RESET (fillfactor)', p); END LOOP; END $$; " +
			"DELETE FROM schema_migrations WHERE version >= 4",
	} {
		if setup != "" {
			if _, err := s.pool.Exec(ctx, "SET search_path TO "+pgx.Identifier{schema}.Sanitize()+"; "+setup+"; RESET search_path"); err != nil {
				t.Fatal(err)
			}
			if _, after, err := Migrate(ctx, testDSN(t), Options{Schema: schema}); err != nil || after != SchemaVersion() {
				t.Fatalf("Migrate: version %d, %v", after, err)
			}
		}
		// 200 rows of about 750 bytes: pages filled as far as they are
		// filled (mostly less than a row free at fillfactor 100), then the
		// final version of one, 30 bytes longer, which fits in the tenth
		// kept free (819 bytes).
		recs := benchRecords(start, round*1000, 200)
		if err := s.AppendAudit(recs, mark); err != nil {
			t.Fatal(err)
		}
		before := page(recs[50])
		final := recs[50]
		final.Data = append(append([]byte(nil), final.Data...), `,"status":200,"duration_ms":12`...)
		if err := s.AppendAudit([]storage.AuditRecord{final}, mark); err != nil {
			t.Fatal(err)
		}
		if after := page(recs[50]); after != before {
			t.Errorf("round %d: the final row went from page %d to page %d", round, before, after)
		}
	}
}

// A query by a secret finds the tenant's rows whose secret it is or that
// used it besides, each once, newest first, page after page; not another
// tenant's rows that name it.
func TestQueryAuditBySecret(t *testing.T) {
	s := openTest(t, Options{})
	if err := s.EnsureBuckets([]byte("meta")); err != nil {
		t.Fatal(err)
	}
	start := time.Now().Add(-2 * time.Hour).UTC()
	recs := benchRecords(start, 0, 60)
	var want []string
	for i := range recs {
		r := &recs[i]
		r.TenantID, r.SecretID, r.UseSecretIDs = "ten_a", "sec_other", nil
		switch i % 6 {
		case 0:
			r.SecretID = "sec_x"
		case 1:
			r.UseSecretIDs = []string{"sec_y", "sec_x"}
		case 2:
			r.SecretID, r.UseSecretIDs = "sec_x", []string{"sec_x"}
		case 3:
			r.TenantID, r.UseSecretIDs = "ten_b", []string{"sec_x"}
		case 4:
			r.TenantID, r.SecretID = "ten_b", "sec_x"
		}
		if r.TenantID == "ten_a" && (r.SecretID == "sec_x" || len(r.UseSecretIDs) > 0) {
			want = append(want, r.ID)
		}
	}
	slices.Reverse(want)
	if err := s.AppendAudit(recs, storage.AuditMark{Bucket: []byte("meta"), Key: []byte("pos"), Value: []byte("1")}); err != nil {
		t.Fatal(err)
	}
	var got []string
	var before storage.AuditPos
	for page := 0; page < 20; page++ {
		// Each page seven times, past PostgreSQL's fifth run of a
		// prepared statement (its plan for any secret may follow).
		var ids []string
		var last storage.AuditRecord
		for run := range 7 {
			recs, err := s.QueryAudit(storage.AuditQuery{TenantID: "ten_a", SecretID: "sec_x", Before: before, Limit: 4})
			if err != nil {
				t.Fatal(err)
			}
			var these []string
			for _, r := range recs {
				these = append(these, r.ID)
			}
			if run > 0 && !slices.Equal(these, ids) {
				t.Fatalf("page %d, run %d: %v, first run %v", page, run, these, ids)
			}
			ids = these
			if len(recs) > 0 {
				last = recs[len(recs)-1]
			}
		}
		if len(ids) == 0 {
			break
		}
		got = append(got, ids...)
		before = storage.AuditPos{Time: last.Time, ID: last.ID}
	}
	if !slices.Equal(got, want) {
		t.Errorf("rows by secret:\n got %v\nwant %v", got, want)
	}
}

// A row written again (an upsert: its columns sent as arrays, a row's
// use_secret_ids as an array literal) keeps every list as it was, quotes,
// backslashes, commas, braces, spaces and the word NULL included; rows of
// two days go each into its own partition.
func TestAuditUpsertLists(t *testing.T) {
	s := openTest(t, Options{})
	if err := s.EnsureBuckets([]byte("meta")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	mark := storage.AuditMark{Bucket: []byte("meta"), Key: []byte("pos"), Value: []byte("1")}
	lists := [][]string{
		nil, {"sec_1"}, {`a"b`, `c\d`, `e,f`, "{g}", " h ", "NULL", ""}, {`\`, `"`, `\"`, "é,ü", "x y"},
	}
	start := time.Now().Add(-48 * time.Hour).UTC().Truncate(24 * time.Hour).Add(23 * time.Hour)
	recs := benchRecords(start, 0, 8)
	for i := range recs {
		recs[i].Time = start.Add(time.Duration(i) * 20 * time.Minute) // two days
		recs[i].UseSecretIDs = lists[i%len(lists)]
	}
	// Shipped twice: COPY, then upserts (none newer than the newest shipped).
	for round := range 2 {
		if err := s.AppendAudit(recs, mark); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		// And once in an Update, as an admin write does.
		if err := s.Update(func(tx storage.Tx) error { return tx.(storage.AuditTx).PutAudit(recs[:3]) }); err != nil {
			t.Fatalf("round %d: PutAudit: %v", round, err)
		}
	}
	for i, r := range recs {
		var got []string
		var part string
		err := s.pool.QueryRow(ctx, "SELECT use_secret_ids, tableoid::regclass::text FROM "+s.aq.table+" WHERE tenant_id = $1 AND ns = $2 AND id = $3",
			r.TenantID, r.Time.UnixNano(), r.ID).Scan(&got, &part)
		if err != nil {
			t.Fatalf("row %d: %v", i, err)
		}
		if !slices.Equal(got, r.UseSecretIDs) || (got == nil) != (r.UseSecretIDs == nil) {
			t.Errorf("row %d: use_secret_ids %q, want %q", i, got, r.UseSecretIDs)
		}
		if want := partitionName(dayOf(r.Time)); !strings.HasSuffix(part, want) {
			t.Errorf("row %d in %s, want %s", i, part, want)
		}
	}
	if n, err := s.CountAudit(); err != nil || n != int64(len(recs)) {
		t.Fatalf("%d rows (%v), want %d", n, err, len(recs))
	}
}

// Migration 0005 rebuilds the secondary indexes of partitions made
// before it (dropped and made again on the table, so on each partition),
// and partitions made after it get the same.
func TestAuditIndexesNarrowed(t *testing.T) {
	schema := freshSchema(t, testDSN(t))
	s := openTest(t, Options{Schema: schema})
	if err := s.EnsureBuckets([]byte("meta")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	mark := storage.AuditMark{Bucket: []byte("meta"), Key: []byte("pos"), Value: []byte("1")}
	start := time.Now().Add(-24 * time.Hour).UTC()
	if err := s.AppendAudit(benchRecords(start, 0, 10), mark); err != nil {
		t.Fatal(err)
	}
	// The indexes as 0003 made them, and the schema back at version 4.
	old := "DROP INDEX audit_ext_user, audit_ext_workspace, audit_sandbox, audit_secret, audit_outcome, audit_order; " +
		"CREATE INDEX audit_ext_user ON audit (tenant_id, external_user_id, ns, id) WHERE external_user_id IS NOT NULL; " +
		"CREATE INDEX audit_ext_workspace ON audit (tenant_id, external_workspace_id, ns, id) WHERE external_workspace_id IS NOT NULL; " +
		"CREATE INDEX audit_sandbox ON audit (tenant_id, sandbox_id, ns, id) WHERE sandbox_id IS NOT NULL; " +
		"CREATE INDEX audit_secret ON audit (tenant_id, secret_id, ns, id) WHERE secret_id IS NOT NULL; " +
		"CREATE INDEX audit_outcome ON audit (tenant_id, outcome, ns, id); " +
		"CREATE INDEX audit_order ON audit (ns, id, tenant_id); " +
		"DELETE FROM schema_migrations WHERE version = 5"
	if _, err := s.pool.Exec(ctx, "SET search_path TO "+pgx.Identifier{schema}.Sanitize()+"; "+old+"; RESET search_path"); err != nil {
		t.Fatal(err)
	}
	if _, after, err := Migrate(ctx, testDSN(t), Options{Schema: schema}); err != nil || after != SchemaVersion() {
		t.Fatalf("Migrate: version %d, %v", after, err)
	}
	// A partition made after the migration (a day with none yet).
	if err := s.AppendAudit(benchRecords(start.Add(-5*24*time.Hour), 100, 3), mark); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"ext_user":      "(tenant_id, external_user_id, ns) WITH (deduplicate_items=off) WHERE (external_user_id IS NOT NULL)",
		"ext_workspace": "(tenant_id, external_workspace_id, ns) WITH (deduplicate_items=off) WHERE (external_workspace_id IS NOT NULL)",
		"sandbox":       "(tenant_id, sandbox_id, ns) WITH (deduplicate_items=off) WHERE (sandbox_id IS NOT NULL)",
		"secret":        "(tenant_id, secret_id, ns) WITH (deduplicate_items=off) WHERE (secret_id IS NOT NULL)",
		"outcome":       "(tenant_id, outcome, ns) WITH (deduplicate_items=off) WHERE (outcome IS NOT NULL)",
		"order":         "(ns) WITH (deduplicate_items=off)",
	}
	rows, err := s.pool.Query(ctx, "SELECT c.relname, pg_get_indexdef(x.indexrelid) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "+
		"JOIN pg_index x ON x.indrelid = c.oid WHERE i.inhparent = to_regclass($1) AND NOT x.indisprimary AND x.indnatts > 0", s.aq.table)
	if err != nil {
		t.Fatal(err)
	}
	type idx struct{ part, def string }
	defs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (idx, error) {
		var i idx
		return i, r.Scan(&i.part, &i.def)
	})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, d := range defs {
		if strings.Contains(d.def, "USING gin") {
			continue
		}
		ok := false
		for name, shape := range want {
			if strings.HasSuffix(d.def, "USING btree "+shape) {
				seen[name]++
				ok = true
			}
		}
		if !ok {
			t.Errorf("%s: unexpected index %s", d.part, d.def)
		}
	}
	parts := len(defs) / len(want)
	if parts < 2 {
		t.Fatalf("indexes of %d partitions, want at least 2: %v", parts, defs)
	}
	for name := range want {
		if seen[name] != parts {
			t.Errorf("audit_%s on %d partitions of %d", name, seen[name], parts)
		}
	}
}
