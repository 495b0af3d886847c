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
