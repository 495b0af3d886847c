package audit

import (
	"testing"
	"time"
)

// Guards against a replay putting a provisional row back over the final row the indexer committed, after a power loss took the final's unsynced journal record.
func TestReviewJournalPowerLossKeepsIndexedFinal(t *testing.T) {
	d := useDisk(t)
	path := tempPath(t)
	s := openAt(t, path, false)
	prov := journalRow(1)
	prov.Outcome, prov.Status = "", 0
	if err := s.Append(prov); err != nil {
		t.Fatal(err)
	}
	final := journalRow(1)
	final.Status, final.DurationMS = 200, 12.5
	if err := s.AppendLater(final); err != nil {
		t.Fatal(err)
	}
	// The indexer commits the final row to bbolt (durable there).
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	if r, _ := getRow(t, s, "ten_j", final.ID); r.Status != 200 {
		t.Fatalf("before the crash: status %d", r.Status)
	}
	crash(t, s)
	d.powerLoss(t, path+".audit-journal")

	s = openAt(t, path, false)
	r, n := getRow(t, s, "ten_j", final.ID)
	if n != 1 || r.Status != 200 || r.DurationMS != 12.5 || r.Outcome != "substituted" {
		t.Fatalf("after the power loss: %d rows, status %d, duration %v, outcome %q: the final row was replaced by the provisional one", n, r.Status, r.DurationMS, r.Outcome)
	}
}

// Guards against rows deleted by PruneAudit coming back from the journal after a crash.
func TestReviewJournalPrunedRowsStayPruned(t *testing.T) {
	path := tempPath(t)
	s := openAt(t, path, true)
	old := time.Now().Add(-200 * 24 * time.Hour)
	for i := range 20 {
		r := journalRow(i)
		r.Time = old.Add(time.Duration(i) * time.Second)
		if err := s.Append(r); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := s.Prune(time.Now().Add(-90*24*time.Hour), 0); err != nil || n != 20 {
		t.Fatalf("pruned %d (%v), want 20", n, err)
	}
	crash(t, s)
	s = openAt(t, path, true)
	if got := countAudit(t, s, "ten_j"); got != 0 {
		t.Fatalf("%d pruned rows came back after the crash", got)
	}
}
