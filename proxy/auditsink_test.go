package proxy

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/egressd/egressd/audit"
	"github.com/egressd/egressd/vault"
)

// The vault sink leaves exactly one row per request: the record written
// before the value left is replaced by the final one, with the full
// identity chain and never the value.
func TestVaultSinkOneRowPerRequest(t *testing.T) {
	for _, mode := range []string{"sync", "journal", "async"} {
		async := mode == "async"
		t.Run(mode, func(t *testing.T) {
			var sink *VaultSink
			e := newEnv(t, func(c *Config) { c.AuditAsync = async })
			var err error
			sink, err = NewVaultSink(e.store, SinkConfig{Async: async, Journal: mode == "journal"})
			if err != nil {
				t.Fatal(err)
			}
			e.proxy.cfg.Sink = sink
			sbx, token := e.sandbox(vault.SandboxInput{OwnerUserID: "u1", WorkspaceID: "w1", ExternalUserID: "eu1", ExternalWorkspaceID: "ew1", ExternalProjectID: "p1"})
			sec := e.secret(vault.SecretInput{Name: "k", Value: "row-secret-value", Scope: vault.ScopeExternalUser, ExternalUserID: "eu1",
				SubstituteIn: []vault.Location{vault.InHeader, vault.InQuery}})
			ph := e.placeholder(sbx, "k")
			do(t, e.client(sbx.ID, token), "GET", e.url("https", "api.test", "/v1/x?q="+ph), nil, map[string]string{"X-Key": ph})
			var rows []audit.Row
			deadline := time.Now().Add(5 * time.Second)
			for {
				rows, _, err = e.store.QueryAudit(e.tenant, audit.Filter{Kind: audit.KindRequest})
				if err != nil {
					t.Fatal(err)
				}
				if len(rows) == 1 && rows[0].Status != 0 || time.Now().After(deadline) {
					break
				}
				time.Sleep(5 * time.Millisecond)
			}
			if len(rows) != 1 {
				t.Fatalf("%d rows", len(rows))
			}
			r := rows[0]
			if r.Status != 200 || r.Outcome != "substituted" || r.SandboxID != sbx.ID || r.ExternalUserID != "eu1" ||
				r.ExternalWorkspaceID != "ew1" || r.ExternalProjectID != "p1" || r.OwnerUserID != "u1" || r.WorkspaceID != "w1" ||
				r.SecretID != sec.ID || r.Level != "external_user" || r.Path != "/v1/x" || len(r.Uses) != 2 {
				t.Fatalf("row %+v", r)
			}
			sink.Close()
			var all strings.Builder
			e.store.ExportAudit("", time.Time{}, func(r audit.Row) error { all.WriteString(r.Path + r.Host + r.Reason); return nil })
			if strings.Contains(all.String(), "row-secret-value") {
				t.Fatal("value in the audit log")
			}
		})
	}
}

// Journal mode: the record made before a value leaves is in the log when
// Record returns (written to the journal, not queued), and a log that
// cannot take it refuses (fail closed).
func TestVaultSinkJournalWritesBeforeReturn(t *testing.T) {
	e := newEnv(t, nil)
	sink, err := NewVaultSink(e.store, SinkConfig{Journal: true})
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	ev := &Event{ID: "aud_journal1", TenantID: e.tenant, Time: time.Now(), Method: "GET", Host: "api.test", Path: "/", Outcome: OutcomeSubstituted}
	if err := sink.Record(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	rows, _, err := e.store.QueryAudit(e.tenant, audit.Filter{Kind: audit.KindRequest})
	if err != nil || len(rows) != 1 || rows[0].ID != "aud_journal1" {
		t.Fatalf("rows %+v %v", rows, err)
	}
	e.store.Close()
	if err := sink.Record(context.Background(), &Event{ID: "aud_journal2", TenantID: e.tenant, Time: time.Now()}); err == nil {
		t.Fatal("a record the log could not take was accepted")
	}
}

// A request finishing after shutdown closed the sink is dropped, not a panic.
func TestVaultSinkRecordAfterClose(t *testing.T) {
	e := newEnv(t, nil)
	sink, err := NewVaultSink(e.store, SinkConfig{})
	if err != nil {
		t.Fatal(err)
	}
	sink.Close()
	if err := sink.Record(context.Background(), &Event{ID: "aud_x", Final: true, TenantID: e.tenant, Time: time.Now()}); err == nil {
		t.Fatal("record after close accepted")
	}
}

// A row the vault refuses costs only itself: the rows queued with it in
// the background writer's batch are still written.
func TestVaultSinkBadRowLosesOnlyItself(t *testing.T) {
	e := newEnv(t, nil)
	sink, err := NewVaultSink(e.store, SinkConfig{Async: true})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	ctx := context.Background()
	good := func(id string) *Event {
		return &Event{ID: id, Final: true, Time: now, TenantID: e.tenant, SandboxID: "sbx_ok", Host: "api.test", Method: "GET", Path: "/", Status: 200, Outcome: OutcomeSubstituted}
	}
	bad := good(audit.NewID(now))
	bad.SandboxID = "sbx\x00bad" // the vault refuses a NUL in an id
	ids := []string{audit.NewID(now), audit.NewID(now)}
	for _, ev := range []*Event{good(ids[0]), bad, good(ids[1])} {
		if err := sink.Record(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	sink.Close() // writes what is queued
	rows, _, err := e.store.QueryAudit(e.tenant, audit.Filter{SandboxID: "sbx_ok"})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 {
		t.Fatalf("%d rows of the 2 good events written", len(rows))
	}
}

// Async mode: every row recorded while the queue has room is written, by
// Close at the latest, and the rows of one client keep their order in the
// log; a row past the queue's bound is dropped (and counted), not waited
// for.
func TestVaultSinkAsyncWritesEveryRow(t *testing.T) {
	e := newEnv(t, nil)
	sink, err := NewVaultSink(e.store, SinkConfig{Async: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	const clients, each = 3, 300
	var wg sync.WaitGroup
	base := time.Now()
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				// Later rows of a client have later times: the log's order.
				ev := benchEvent(e.tenant, true)
				ev.SandboxID = fmt.Sprintf("sbx_%d", c)
				ev.Status = 200 + i%100
				ev.Time = base.Add(time.Duration(i) * time.Millisecond)
				ev.ID = audit.NewID(ev.Time)
				if err := sink.Record(ctx, ev); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	sink.Close()
	for c := range clients {
		var got []audit.Row
		e.store.ExportAudit(e.tenant, time.Time{}, func(r audit.Row) error {
			if r.SandboxID == fmt.Sprintf("sbx_%d", c) {
				got = append(got, r)
			}
			return nil
		})
		if len(got) != each {
			t.Fatalf("client %d: %d rows of %d", c, len(got), each)
		}
		for i, r := range got {
			if r.Status != 200+i%100 || !r.Time.Equal(base.Add(time.Duration(i)*time.Millisecond)) {
				t.Fatalf("client %d: row %d is %d at %v", c, i, r.Status, r.Time)
			}
		}
	}

	// A queue of 4: the writer gathers for gatherWait before it takes any,
	// so of 50 rows queued at once most are dropped, none waited for.
	reg := prometheus.NewRegistry()
	small, err := NewVaultSink(e.store, SinkConfig{Async: true, QueueSize: 4, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	for range 50 {
		ev := benchEvent(e.tenant, true)
		ev.Time = time.Now()
		ev.ID = audit.NewID(ev.Time)
		if err := small.Record(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	small.Close()
	var dropped float64
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "egressd_audit_rows_dropped_total" {
			dropped = mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	if dropped < 1 || dropped > 46 {
		t.Fatalf("%v rows dropped of 50 queued into 4 places", dropped)
	}
}

// Regression: the queue's ring was a channel of 400-byte rows, allocated
// whole with the sink: 25 MiB of heap (and of resident memory once the
// ring had gone round) at the default size, whatever the load.
func TestVaultSinkQueueIsSmall(t *testing.T) {
	e := newEnv(t, nil)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	sink, err := NewVaultSink(e.store, SinkConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	runtime.ReadMemStats(&after)
	if grew := int64(after.HeapInuse) - int64(before.HeapInuse); grew > 4<<20 {
		t.Fatalf("a sink with the default queue takes %d KiB of heap, want at most 4 MiB", grew>>10)
	}
}

// What the audit sink and the vault cost a request, in the proxy's CPU
// (all goroutines: the vault's committer and indexer included), as
// cpu-µs/row: journal-row is the record written before a value leaves in
// journal mode (Record waits for the journal write), from 50 concurrent
// requests as egress-bench sends them; final-row is the final record,
// queued and written by the background writer (async mode's only row).
// request is what journal mode costs a request: its record before the
// value leaves, then its final record (same id) replacing it. Each
// reports allocations too.
func BenchmarkVaultSinkRecord(b *testing.B) {
	b.Run("journal-row", func(b *testing.B) { benchSinkRecord(b, false, false) })
	b.Run("final-row", func(b *testing.B) { benchSinkRecord(b, true, false) })
	b.Run("request", func(b *testing.B) { benchSinkRecord(b, false, true) })
}

func benchSinkRecord(b *testing.B, final, both bool) {
	e := newEnv(b, nil)
	sink, err := NewVaultSink(e.store, SinkConfig{Journal: true})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.SetParallelism(25) // 50 goroutines on 2 cores
	cpu := processCPU()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ev := benchEvent(e.tenant, final)
		for pb.Next() {
			// Rows in time order, as requests make them (the indexes'
			// keys then append rather than split pages).
			ev.Time = time.Now()
			ev.ID = audit.NewID(ev.Time)
			if err := sink.Record(ctx, ev); err != nil {
				b.Error(err)
				return
			}
			if both {
				ev.Final = true
				err := sink.Record(ctx, ev)
				ev.Final = false
				if err != nil {
					b.Error(err)
					return
				}
			}
		}
	})
	closeSinkBench(b, e, sink, cpu)
}

// closeSinkBench closes sink, so the queued rows are written (and
// indexed: a query waits for them) inside the measured time, and reports
// the process's CPU since cpu a row.
func closeSinkBench(b *testing.B, e *env, sink *VaultSink, cpu time.Duration) {
	sink.Close()
	if _, _, err := e.store.QueryAudit(e.tenant, audit.Filter{Limit: 1}); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	if used := processCPU() - cpu; used > 0 {
		b.ReportMetric(float64(used.Microseconds())/float64(b.N), "cpu-µs/row")
	}
}

// Async mode's row as rows come at egress-bench's pace rather than as
// fast as 50 goroutines can queue them: 50 clients, each making one row
// every 5 ms (10,000 rows a second), the way requests finish. What each
// row costs the process (queueing, the background writer, the journal
// write and the indexer's commit, and the pacing's own timers: the same
// for every version of the sink), as cpu-µs/row; a writer that wakes for
// every row or two pays its wake-ups and journal writes per row here,
// which the unpaced benchmarks (their queue always full) never show.
// pacing-only is the pacing without the sink, to subtract.
func BenchmarkVaultSinkPacedRows(b *testing.B) {
	b.Run("async", func(b *testing.B) { benchSinkPaced(b, true) })
	b.Run("pacing-only", func(b *testing.B) { benchSinkPaced(b, false) })
}

func benchSinkPaced(b *testing.B, record bool) {
	e := newEnv(b, nil)
	sink, err := NewVaultSink(e.store, SinkConfig{Async: true})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.SetParallelism(25) // 50 goroutines on 2 cores
	cpu := processCPU()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ev := benchEvent(e.tenant, true)
		for pb.Next() {
			ev.Time = time.Now()
			ev.ID = audit.NewID(ev.Time)
			if record {
				if err := sink.Record(ctx, ev); err != nil {
					b.Error(err)
					return
				}
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
	closeSinkBench(b, e, sink, cpu)
}

// The final record of a request, queued and written in the background:
// what Record and the writer cost a request (the vault's own cost, the
// row's encoding and journal write, included).
func BenchmarkVaultSinkFinalRecord(b *testing.B) {
	e := newEnv(b, nil)
	sink, err := NewVaultSink(e.store, SinkConfig{Journal: true})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	ev := benchEvent(e.tenant, true)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		ev.Time = time.Now()
		ev.ID = audit.NewID(ev.Time)
		if err := sink.Record(ctx, ev); err != nil {
			b.Fatal(err)
		}
	}
	sink.Close() // the queued rows are written inside the measured time
}

// benchEvent is the sink benchmarks' request: one substitution in a
// header; the caller sets its time and id.
func benchEvent(tenant string, final bool) *Event {
	return &Event{Final: final, TenantID: tenant, SandboxID: "sbx_bench", ExternalUserID: "u1", Host: "api.test", Method: "GET", Path: "/v1/models",
		Status: 200, Outcome: OutcomeSubstituted, Duration: time.Millisecond,
		Uses: []Use{{Name: "openai", SecretID: "sec_1", Version: 1, Level: "tenant", Location: vault.InHeader, Action: ActionSubstituted}}}
}
