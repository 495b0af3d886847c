package audit

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/egressd/egressd/vault/storage"
)

// failingUpdates fails the Update calls numbered in fail (from 1).
type failingUpdates struct {
	storage.Backend
	n    atomic.Int64
	fail map[int64]bool
}

var errInjected = errors.New("injected commit failure")

func (f *failingUpdates) Update(fn func(storage.Tx) error) error {
	if f.fail[f.n.Add(1)] {
		return errInjected
	}
	return f.Backend.Update(fn)
}

func entriesOf(t *testing.T, rows ...Row) []auditEntry {
	t.Helper()
	var out []auditEntry
	for i := range rows {
		e, err := rows[i].prepare(time.Now)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	return out
}

// Off bbolt the indexer commits in chunks of whole groups, in journal
// order, each with the position of its last group: a chunk that fails
// leaves the ones before it committed and their position recorded (a
// replay after a crash starts exactly there), and is retried with the
// ones after it; a row's final version in a later chunk wins.
func TestIndexerCommitsInChunks(t *testing.T) {
	s := openTest(t)
	fb := &failingUpdates{Backend: s.db, fail: map[int64]bool{2: true}}
	x := &auditIndexer{db: fb, posKey: journalPosKey("n1"), chunkRows: 4}
	final := journalRow(1)
	final.Status = 200
	x.take(entriesOf(t, journalRow(0), journalRow(1), journalRow(2)), journalPos{7, 300})
	x.take(entriesOf(t, journalRow(3), journalRow(4)), journalPos{7, 500}) // joins the first chunk: 3 < 4
	x.take(entriesOf(t, journalRow(5)), journalPos{7, 600})                // a new one
	x.take(entriesOf(t, final, journalRow(6)), journalPos{7, 800})         // row 1 again, later
	if len(x.chunks) != 2 || len(x.chunks[0].entries) != 5 || len(x.chunks[1].entries) != 3 || x.held != 8 {
		t.Fatalf("chunks of %d rows (held %d)", len(x.chunks), x.held)
	}
	if err := x.commit(); !errors.Is(err, errInjected) {
		t.Fatalf("commit: %v, want the injected failure", err)
	}
	pos := func() journalPos {
		var p journalPos
		s.db.View(func(tx storage.Tx) error { p = indexedPos(tx.Bucket(bMeta), x.posKey); return nil })
		return p
	}
	if p := pos(); p != (journalPos{7, 500}) || x.held != 3 || len(x.chunks) != 1 {
		t.Fatalf("after the second chunk failed: position %v, held %d, %d chunks", p, x.held, len(x.chunks))
	}
	if r, n := getRow(t, s, "ten_j", final.ID); n != 1 || r.Status != 0 {
		t.Fatalf("row 1 after the first chunk: %d, status %d", n, r.Status)
	}
	if err := x.commit(); err != nil {
		t.Fatal(err)
	}
	if p := pos(); p != (journalPos{7, 800}) || x.held != 0 || len(x.chunks) != 0 {
		t.Fatalf("after the retry: position %v, held %d, %d chunks", p, x.held, len(x.chunks))
	}
	if r, n := getRow(t, s, "ten_j", final.ID); n != 1 || r.Status != 200 {
		t.Fatalf("row 1: %d copies, status %d: the final version must win", n, r.Status)
	}
	if got := countAudit(t, s, "ten_j"); got != 7 {
		t.Fatalf("%d rows, want 7", got)
	}
	// The buffers are reused.
	x.take(entriesOf(t, journalRow(9)), journalPos{7, 900})
	if err := x.commit(); err != nil || x.spare == nil {
		t.Fatalf("commit: %v, spare kept %v", err, x.spare != nil)
	}
}

// On bbolt one transaction takes everything the indexer holds.
func TestIndexerOneTransactionOnBolt(t *testing.T) {
	s := openTest(t)
	b := needBoltFile(t, s)
	if x := newAuditIndexer(b, nil, metaAuditJournal, 0); x.chunkRows < indexMaxRows+maxAuditRowsPerCommit {
		t.Fatalf("chunk of %d rows on bbolt", x.chunkRows)
	} else {
		x.close()
	}
}
