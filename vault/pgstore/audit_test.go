package pgstore

import (
	"context"
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
