package audit

import (
	"strings"
	"testing"
	"time"
)

// Guards against a replayed row differing from the one the indexer would have stored (a re-encoded path cut again at its limit).
func TestReviewJournalReplayStoresJournaledBytes(t *testing.T) {
	path := tempPath(t)
	s := openAt(t, path, true)
	crash(t, s)
	r := journalRow(1)
	r.Path = strings.Repeat("a", maxAuditPath-1) + "\xff"
	journalAppend(t, path+".audit-journal", r)
	e, _ := r.prepare(time.Now)
	var want Row
	if err := decodeAuditRow(e.val, nil, &want); err != nil {
		t.Fatal(err)
	}
	s = openAt(t, path, true)
	got, n := getRow(t, s, "ten_j", r.ID)
	if n != 1 || got.Path != want.Path {
		t.Fatalf("%d rows; path of %d bytes, the journal's has %d", n, len(got.Path), len(want.Path))
	}
}
