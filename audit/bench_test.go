package audit

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/egressd/egressd/vault/storage"
)

// BenchmarkAppendAuditConcurrent measures request rows per second with 64
// concurrent writers, one row per call and each call durable (fsync'd) on
// return: the proxy's load. The rows are of 4 tenants, 3 external users
// and 5 sandboxes each (many-ids: 1,000 users and 5,000 sandboxes, so
// nearly every row dirties index pages of its own). group-commit is
// AppendAudit (on PostgreSQL, EGRESSD_TEST_STORE=postgres, shipped to
// its audit table with COPY); group-commit-buckets is the same on the
// audit buckets, the one layout before the table (on bbolt the same as
// group-commit; on PostgreSQL about 7 statements a row); bolt-batch is the same rows through bbolt's db.Batch at
// the settings named, for comparison.
func BenchmarkAppendAuditConcurrent(b *testing.B) {
	const writers = 64
	few := func(i int) Row { return requestRow(fmt.Sprintf("ten_%d", i%4), time.Now(), i) }
	many := func(i int) Row {
		r := few(i)
		r.ExternalUserID, r.SandboxID = fmt.Sprintf("eu_%d", i*7919%1000), fmt.Sprintf("sbx_%d", i*7919%5000)
		return r
	}
	appendAudit := func(s *testLog, r Row) error { return s.Append(r) }
	boltBatch := func(s *testLog, r Row) error {
		e, err := r.prepare(s.now)
		if err != nil {
			return err
		}
		return s.db.Batch(func(tx storage.Tx) error {
			ab := txAuditBuckets(tx)
			return ab.put(&e)
		})
	}
	type variant struct {
		name        string
		noSync      bool
		kvOnly      bool          // the audit log in buckets even on a backend with an audit store
		size        int           // db.MaxBatchSize, for bolt-batch
		delay       time.Duration // db.MaxBatchDelay, for bolt-batch
		row         func(i int) Row
		appendAudit func(*testLog, Row) error
	}
	for _, v := range []variant{
		{name: "group-commit", row: few, appendAudit: appendAudit},
		{name: "group-commit-many-ids", row: many, appendAudit: appendAudit},
		{name: "group-commit-nosync", noSync: true, row: few, appendAudit: appendAudit},
		{name: "group-commit-buckets", kvOnly: true, row: few, appendAudit: appendAudit},
		{name: "bolt-batch-default-1000-10ms", size: 1000, delay: 10 * time.Millisecond, row: few, appendAudit: boltBatch},
		{name: "bolt-batch-64-10ms", size: 64, delay: 10 * time.Millisecond, row: few, appendAudit: boltBatch},
		{name: "bolt-batch-32-1ms", size: 32, delay: time.Millisecond, row: few, appendAudit: boltBatch},
	} {
		b.Run(v.name, func(b *testing.B) {
			s := openTest(b, func(c *Config) {
				c.NoSync = v.noSync
				if v.kvOnly {
					c.Backend = bucketsOnly{newTestBackend(b, tempPath(b), c.NoSync)}
				}
			})
			if v.size > 0 {
				db := needBoltFile(b, s).DB()
				db.MaxBatchSize, db.MaxBatchDelay = v.size, v.delay
			}
			var n atomic.Int64
			b.SetParallelism((writers + 1) / 2) // times GOMAXPROCS (2 here)
			b.ReportAllocs()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := v.appendAudit(s, v.row(int(n.Add(1)))); err != nil {
						b.Error(err)
						return
					}
				}
			})
			// Rows count once they are in bbolt, indexed, not only
			// journaled.
			if err := s.Sync(); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "rows/s")
		})
	}
}

// BenchmarkQueryAuditFiltered measures the first page (100 rows, newest
// first) of queries over a log of 1,000,000 rows of one tenant, with 1,000
// external users, 100 workspaces, 5,000 sandboxes and 50 secrets. The log
// is built once, without fsync and in transactions of 50,000 rows; only
// -bench runs it.
func BenchmarkQueryAuditFiltered(b *testing.B) {
	const rows = 1_000_000
	s := openTest(b)
	start := time.Now()
	buildAuditLog(b, s, rows)
	b.Logf("%d rows built in %v", rows, time.Since(start).Round(time.Millisecond))
	for _, c := range []struct {
		name string
		f    Filter
	}{
		{"unfiltered", Filter{}},
		{"external_user_id", Filter{ExternalUserID: "eu_42"}},
		{"external_user_id-since-7d", Filter{ExternalUserID: "eu_42", Since: auditBase.Add(23 * 24 * time.Hour)}},
		{"sandbox_id", Filter{SandboxID: "sbx_4242"}},
		{"outcome-1pct-no-index", Filter{Outcome: "denied"}},
	} {
		b.Run(c.name, func(b *testing.B) {
			var n int
			for b.Loop() {
				page, _, err := s.Query("ten_a", c.f)
				if err != nil {
					b.Fatal(err)
				}
				n = len(page)
			}
			if n == 0 {
				b.Fatal("empty page")
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/page")
			b.ReportMetric(float64(n), "rows/page")
		})
	}
}

// buildAuditLog writes n request rows spread over 30 days from auditBase.
func buildAuditLog(b *testing.B, s *testLog, n int) {
	const perTx = 50_000
	step := 30 * 24 * time.Hour / time.Duration(n)
	for i := 0; i < n; {
		entries := make([]auditEntry, 0, perTx)
		for ; i < n && len(entries) < perTx; i++ {
			t := auditBase.Add(time.Duration(i) * step)
			r := Row{
				ID: NewID(t), Time: t, Kind: KindRequest, TenantID: "ten_a",
				WorkspaceID: fmt.Sprintf("w_%d", i%100), OwnerUserID: fmt.Sprintf("u_%d", i%1000),
				ExternalUserID: fmt.Sprintf("eu_%d", i%1000), ExternalWorkspaceID: fmt.Sprintf("ew_%d", i%100),
				SandboxID: fmt.Sprintf("sbx_%d", i*7%5000), SecretID: fmt.Sprintf("sec_%d", i%50), SecretName: "openai",
				SecretVersion: 1, Level: "tenant", Host: "api.openai.com", Method: "POST", Path: "/v1/chat/completions",
				Status: 200, Outcome: "substituted", DurationMS: 120.5,
				Uses: []Use{{Name: "openai", SecretID: fmt.Sprintf("sec_%d", i%50), Version: 1, Level: "tenant", Location: "header", Action: "substituted"}},
			}
			if i%100 == 0 {
				r.Outcome, r.Status, r.Reason = "denied", 403, "host_not_allowed"
			}
			e, err := r.prepare(s.now)
			if err != nil {
				b.Fatal(err)
			}
			entries = append(entries, e)
		}
		err := s.db.Update(func(tx storage.Tx) error {
			ab := txAuditBuckets(tx)
			for j := range entries {
				if err := ab.put(&entries[j]); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}

// bucketsOnly hides a backend's audit store (storage.AuditTx) from the
// vault: the audit log goes to the buckets, as on a backend without one.
type bucketsOnly struct{ storage.Backend }

type plainTx struct{ storage.Tx }

func (b bucketsOnly) View(fn func(storage.Tx) error) error {
	return b.Backend.View(func(tx storage.Tx) error { return fn(plainTx{tx}) })
}

func (b bucketsOnly) Update(fn func(storage.Tx) error) error {
	return b.Backend.Update(func(tx storage.Tx) error { return fn(plainTx{tx}) })
}

func (b bucketsOnly) Batch(fn func(storage.Tx) error) error {
	return b.Backend.Batch(func(tx storage.Tx) error { return fn(plainTx{tx}) })
}

// BenchmarkAuditIndexCommit measures the indexer's transaction a row: a
// thousand rows (4 tenants, 3 users and 5 sandboxes each, in time order,
// as requests make them) put into the audit buckets in one bbolt
// transaction, fsync off. one-by-one is put for each row (every index
// entry its own Put and a copy of its chunk); at-once is putAll, what the
// indexer does (the entries of one index and prefix added together, one
// Put a chunk). replaced writes each row twice, in two transactions, the
// second version over the first (a final row whose provisional row was
// committed before it arrived), with the same ids: put removes and adds
// the index entries again, putAll keeps them.
func BenchmarkAuditIndexCommit(b *testing.B) {
	const rows = 1000
	for _, c := range []struct {
		name     string
		all      bool
		replaced bool
	}{{"one-by-one", false, false}, {"at-once", true, false}, {"replaced/one-by-one", false, true}, {"replaced/at-once", true, true}} {
		b.Run(c.name, func(b *testing.B) {
			s := openTest(b)
			base := time.Now()
			n := 0
			entries := make([]auditEntry, rows)
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer() // the rows' encoding is not the transaction's
				for i := range entries {
					r := requestRow(fmt.Sprintf("ten_%d", n%4), base.Add(time.Duration(n)*time.Microsecond), n)
					n++
					e, err := r.prepare(s.now)
					if err != nil {
						b.Fatal(err)
					}
					entries[i] = e
				}
				b.StartTimer()
				for range 1 + btoi(c.replaced) {
					if err := s.db.Update(func(tx storage.Tx) error {
						ab := txAuditBuckets(tx)
						if c.all {
							return ab.putAll(entries)
						}
						for i := range entries {
							if err := ab.put(&entries[i]); err != nil {
								return err
							}
						}
						return nil
					}); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*rows), "ns/row")
		})
	}
}

func btoi(v bool) int {
	if v {
		return 1
	}
	return 0
}
