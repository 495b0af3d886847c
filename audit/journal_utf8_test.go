package audit

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// Guards against a row whose ids are not valid UTF-8 being replayed under another key than the one it was indexed under (a second copy of the row).
func TestReviewJournalReplayKeepsKey(t *testing.T) {
	path := tempPath(t)
	s := openAt(t, path, true)
	prov := journalRow(1)
	prov.TenantID, prov.Outcome = "ten_\xff", ""
	err := s.Append(prov)
	if errors.Is(err, ErrInvalid) {
		// Refused: nothing to replay under another key.
		if got := countAudit(t, s, prov.TenantID); got != 0 {
			t.Fatalf("a refused row was stored: %d", got)
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	crash(t, s)
	final := journalRow(1)
	final.TenantID = prov.TenantID
	journalAppend(t, path+".audit-journal", final) // the final row, journaled, not indexed
	s = openAt(t, path, true)
	n := countAudit(t, s, prov.TenantID) + countAudit(t, s, "ten_\uFFFD")
	if n != 1 {
		t.Fatalf("%d copies of one row after the replay", n)
	}
}

// Every row AppendAudit accepts keeps its key and index keys through the
// journal's JSON: a replay puts it where the indexer would have.
func TestReviewJournalKeysSurviveJSON(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	pick := func() string { return auditJSONSamples[rng.IntN(len(auditJSONSamples))] }
	checked := 0
	for range 20000 {
		r := randomAuditRow(rng, pick)
		r.Kind, r.ID = KindRequest, ""
		if r.TenantID == "" {
			r.TenantID = "t"
		}
		r.Time = r.Time.Add(time.Duration(rng.IntN(1000)))
		e, err := r.prepare(time.Now)
		if err == nil {
			err = journalable(&r, &e)
		}
		if err != nil {
			continue
		}
		checked++
		var back Row
		if err := decodeAuditRow(e.val, nil, &back); err != nil {
			t.Fatal(err)
		}
		e2, err := back.prepare(time.Now)
		if err != nil {
			t.Fatalf("a journaled row is refused on replay: %v", err)
		}
		if !bytes.Equal(e.key, e2.key) {
			t.Fatalf("key %q replayed as %q", e.key, e2.key)
		}
		for i := range e.idx {
			if !slices.EqualFunc(e.idx[i], e2.idx[i], bytes.Equal) {
				t.Fatalf("index %d: %q replayed as %q", i, e.idx[i], e2.idx[i])
			}
		}
	}
	if checked < 1000 {
		t.Fatalf("only %d rows accepted", checked)
	}
}
