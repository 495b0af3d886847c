package pgstore

import (
	"fmt"
	"testing"
	"time"

	"github.com/egressd/egressd/vault/storage"
)

// benchRecords are n audit records of a proxied request's size (about
// 600 bytes of JSON), of 4 tenants, 1,000 users and 5,000 sandboxes, one
// secret each, a millisecond apart from start.
func benchRecords(start time.Time, from, n int) []storage.AuditRecord {
	out := make([]storage.AuditRecord, n)
	for i := range out {
		k := from + i
		t := start.Add(time.Duration(k) * time.Millisecond)
		id := fmt.Sprintf("aud_%016d", k)
		out[i] = storage.AuditRecord{
			TenantID: fmt.Sprintf("ten_%d", k%4), Time: t, ID: id, Kind: "request", Outcome: "substituted",
			ExternalUserID: fmt.Sprintf("eu_%d", k*7919%1000), SandboxID: fmt.Sprintf("sbx_%d", k*7919%5000),
			SecretID: fmt.Sprintf("sec_%d", k%50),
			Data: fmt.Appendf(nil, `{"id":%q,"time":%q,"kind":"request","tenant_id":"ten_%d","sandbox_id":"sbx_%d","secret_id":"sec_%d",`+
				`"host":"api.example.com","method":"POST","path":"/v1/chat/completions","status":200,"outcome":"substituted","duration_ms":12.5,`+
				`"uses":[{"name":"OPENAI_API_KEY","secret_id":"sec_%d","version":3,"level":"tenant","location":"header","action":"substituted"}],`+
				`"padding":"%0200d"}`, id, t.Format(time.RFC3339Nano), k%4, k*7919%5000, k%50, k%50, 0),
		}
	}
	return out
}

// BenchmarkAppendAudit measures audit rows per second shipped to the
// audit table: AppendAudit (COPY into the staging table, one upsert,
// the journal position) with batches of the sizes named; the indexer
// ships up to 4096 rows and a group a call. kv-statements is the same
// rows as the audit buckets put them before the table: a row and three
// index keys, each an INSERT … ON CONFLICT, in Updates of 128 rows.
//
//	EGRESSD_TEST_POSTGRES=... go test -run '^$' -bench AppendAudit ./vault/pgstore/
func BenchmarkAppendAudit(b *testing.B) {
	start := time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)
	mark := storage.AuditMark{Bucket: []byte("meta"), Key: []byte("audit_journal\x00bench"), Value: make([]byte, 16)}
	for _, batch := range []int{128, 1024, 4096} {
		b.Run(fmt.Sprintf("copy-%d", batch), func(b *testing.B) {
			s := openTest(b, Options{})
			if err := s.EnsureBuckets([]byte("meta")); err != nil {
				b.Fatal(err)
			}
			n := 0
			for b.Loop() {
				if err := s.AppendAudit(benchRecords(start, n, batch), mark); err != nil {
					b.Fatal(err)
				}
				n += batch
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "rows/s")
		})
	}
	b.Run("kv-statements-128", func(b *testing.B) {
		s := openTest(b, Options{})
		names := [][]byte{[]byte("meta"), []byte("audit"), []byte("audit_ext_user"), []byte("audit_sandbox"), []byte("audit_secret")}
		if err := s.EnsureBuckets(names...); err != nil {
			b.Fatal(err)
		}
		n := 0
		for b.Loop() {
			recs := benchRecords(start, n, 128)
			if err := s.Update(func(tx storage.Tx) error {
				for _, r := range recs {
					pos := fmt.Sprintf("\x00%d\x00%s", r.Time.UnixNano(), r.ID)
					for _, kv := range [][2]string{{"audit", r.TenantID + pos}, {"audit_ext_user", r.TenantID + "\x00" + r.ExternalUserID + pos},
						{"audit_sandbox", r.TenantID + "\x00" + r.SandboxID + pos}, {"audit_secret", r.TenantID + "\x00" + r.SecretID + pos}} {
						v := []byte{}
						if kv[0] == "audit" {
							v = r.Data
						}
						// The old put read the row first (a replaced row's index keys).
						if kv[0] == "audit" && tx.Bucket([]byte(kv[0])).Get([]byte(kv[1])) != nil {
							return fmt.Errorf("row %s twice", r.ID)
						}
						if err := tx.Bucket([]byte(kv[0])).Put([]byte(kv[1]), v); err != nil {
							return err
						}
					}
				}
				return tx.Bucket(mark.Bucket).Put(mark.Key, mark.Value)
			}); err != nil {
				b.Fatal(err)
			}
			n += 128
		}
		b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "rows/s")
	})
}

// shipRecords are the rows a node's indexer ships in one batch under the
// proxy's load (egress-bench's mitm-header): n requests of one tenant,
// sandbox and secret, each a provisional row and a final one with the
// same id and time collapsed in the batch to the final one, except for
// the requests the batch's end cuts in two: of those (straddle of every
// 100, spread through the batch; or with tail, the batch's last straddle
// in 100, as the requests in flight when the indexer commits are) the
// provisional row ships in this batch, the final one in the next. carry
// holds the finals this batch owes the last one.
func shipRecords(start time.Time, from, n, straddle int, tail bool, carry []storage.AuditRecord) (batch, next []storage.AuditRecord) {
	batch = append(batch, carry...)
	for i := range n {
		k := from + i
		t := start.Add(time.Duration(k) * 50 * time.Microsecond)
		r := storage.AuditRecord{
			TenantID: "ten_2q4pnbr7bnm3ejcs", Time: t, ID: fmt.Sprintf("aud_%016d", k), Kind: "request", Outcome: "substituted",
			SandboxID: "sbx_bt6hq3x5ttm2ygw7", SecretID: "sec_k2m6dw3h7wzq6jb4",
			Data: fmt.Appendf(nil, "%0360d", k),
		}
		if (!tail && k%100 < straddle) || (tail && i >= n-n*straddle/100) {
			// The final row: the same fields, its status and duration added.
			final := r
			final.Data = fmt.Appendf(nil, "%0380d", k)
			next = append(next, final)
		}
		batch = append(batch, r)
	}
	return batch, next
}

// BenchmarkShipAudit measures what shipping the proxy's rows costs the
// PostgreSQL server: AppendAudit with batches of 512 requests' rows,
// shaped as shipRecords says, and the server's CPU a shipped row
// (server-µs/row, read from /proc when the server runs on this machine:
// its backends', autovacuum's and the WAL writer's), with none or a
// twentieth (as egress-bench's mitm-header-pg saw: 4%) or a fifth of the
// requests' finals shipped a batch after their provisional rows, spread
// through the batch, or a twentieth at its end (-tail).
//
//	EGRESSD_TEST_POSTGRES=... go test -run '^$' -bench ShipAudit -benchtime 200x ./vault/pgstore/
func BenchmarkShipAudit(b *testing.B) {
	start := time.Now().Add(-time.Hour).Truncate(time.Hour)
	mark := storage.AuditMark{Bucket: []byte("meta"), Key: []byte("audit_journal\x00bench"), Value: make([]byte, 16)}
	for _, c := range []struct {
		straddle int
		tail     bool
	}{{0, false}, {5, false}, {20, false}, {5, true}} {
		straddle := c.straddle
		name := fmt.Sprintf("straddle-%d%%", straddle)
		if c.tail {
			name += "-tail"
		}
		b.Run(name, func(b *testing.B) {
			s := openTest(b, Options{})
			if err := s.EnsureBuckets([]byte("meta")); err != nil {
				b.Fatal(err)
			}
			cpu0, ok := serverCPU(b, s)
			n, rows := 0, 0
			var carry []storage.AuditRecord
			for b.Loop() {
				var batch []storage.AuditRecord
				batch, carry = shipRecords(start, n, 512, straddle, c.tail, carry)
				if err := s.AppendAudit(batch, mark); err != nil {
					b.Fatal(err)
				}
				n += 512
				rows += len(batch)
			}
			b.ReportMetric(float64(rows)/b.Elapsed().Seconds(), "rows/s")
			if cpu1, _ := serverCPU(b, s); ok {
				b.ReportMetric(float64((cpu1-cpu0).Microseconds())/float64(rows), "server-µs/row")
			}
		})
	}
}
