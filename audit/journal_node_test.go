package audit

import (
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/egressd/egressd/internal/pgtest"
	"github.com/egressd/egressd/vault/storage"
)

// openNode opens the vault at path as node: its own journal beside path,
// on the backend the test gives (newTestBackend's when nil).
func openNode(tb testing.TB, path, node string, backend storage.Backend) *testLog {
	tb.Helper()
	s, err := openCfg(tb, path, Config{JournalPath: filepath.Join(filepath.Dir(path), node+".journal"), NodeID: node, NoSync: true, Backend: backend})
	if err != nil {
		tb.Fatalf("open as %s: %v", node, err)
	}
	return s
}

// positions reads the journal positions recorded in s's meta bucket, by
// node id ("" for the single key of a one-node vault).
func positions(tb testing.TB, s *testLog) map[string]journalPos {
	tb.Helper()
	out := map[string]journalPos{}
	err := s.db.View(func(tx storage.Tx) error {
		meta := tx.Bucket(bMeta)
		return meta.ForEach(func(k, _ []byte) error {
			if node, ok := strings.CutPrefix(string(k), string(metaAuditJournal)); ok {
				out[strings.TrimPrefix(node, "\x00")] = indexedPos(meta, k)
			}
			return nil
		})
	})
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

func appendRows(tb testing.TB, s *testLog, from, to int) {
	tb.Helper()
	for i := from; i < to; i++ {
		if err := s.Append(journalRow(i)); err != nil {
			tb.Fatal(err)
		}
	}
}

// wantRows checks that the tenant holds exactly the rows of ids, each once.
func wantRows(tb testing.TB, s *testLog, ids ...[2]int) {
	tb.Helper()
	seen := map[string]int{}
	for _, r := range allAudit(tb, s, "ten_j") {
		seen[r.ID]++
	}
	want := 0
	for _, span := range ids {
		for i := span[0]; i < span[1]; i++ {
			want++
			if id := journalRow(i).ID; seen[id] != 1 {
				tb.Errorf("row %s stored %d times, want once", id, seen[id])
			}
		}
	}
	if len(seen) != want {
		tb.Errorf("%d rows stored, want %d", len(seen), want)
	}
}

// Two nodes on one store, one after the other (a bbolt file cannot be
// shared; on PostgreSQL the suite's backend is a schema): node B's
// indexer records its position under its own key, so node A, which
// crashed with rows in its journal that its indexer never committed,
// replays exactly those. Under one shared key A found B's position, of
// another journal: it replayed its whole journal, and rows PruneAudit had
// deleted came back (or, at B's epoch, it skipped acknowledged rows).
func TestJournalPositionPerNode(t *testing.T) {
	path := tempPath(t)
	a := openNode(t, path, "node-a", nil)
	appendRows(t, a, 0, 20)
	if n, err := a.Prune(journalRow(10).Time, 0); err != nil || n != 10 {
		t.Fatalf("pruned %d (%v), want 10", n, err)
	}
	crash(t, a)
	// Acknowledged (synced to A's journal), never indexed.
	journalAppend(t, filepath.Join(filepath.Dir(path), "node-a.journal"), rowsOf(20, 30)...)

	b := openNode(t, path, "node-b", nil)
	appendRows(t, b, 100, 150)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	a = openNode(t, path, "node-a", nil)
	wantRows(t, a, [2]int{10, 30}, [2]int{100, 150})
	pos := positions(t, a)
	if _, ok := pos[""]; ok || len(pos) != 2 || pos["node-a"].epoch == 0 || pos["node-b"].epoch == 0 {
		t.Errorf("positions %v, want one of node-a and one of node-b", pos)
	}
}

func rowsOf(from, to int) []Row {
	var out []Row
	for i := from; i < to; i++ {
		out = append(out, journalRow(i))
	}
	return out
}

// A single-node vault from before node ids keeps its journal's position
// under the one key: the first open with a node id takes it over (and the
// rows it left unindexed are replayed once), and the one key is gone, so
// a second node starts from nothing of it.
func TestJournalPositionSingleKeyMoves(t *testing.T) {
	path := tempPath(t)
	s := openAt(t, path, true) // no node id: the one key
	appendRows(t, s, 0, 10)
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	if pos := positions(t, s); len(pos) != 1 || pos[""].epoch == 0 {
		t.Fatalf("positions without a node id: %v", pos)
	}
	crash(t, s)
	journalAppend(t, path+".audit-journal", rowsOf(10, 20)...)

	// The node's journal is the file the one key described.
	s, err := openCfg(t, path, Config{JournalPath: path + ".audit-journal", NodeID: "node-a", NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	wantRows(t, s, [2]int{0, 20})
	pos := positions(t, s)
	if _, ok := pos[""]; ok || len(pos) != 1 || pos["node-a"].epoch == 0 {
		t.Fatalf("positions after the move: %v, want node-a's only", pos)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	b := openNode(t, path, "node-b", nil)
	appendRows(t, b, 100, 105)
	wantRows(t, b, [2]int{0, 20}, [2]int{100, 105})
	if pos := positions(t, b); len(pos) != 2 {
		t.Fatalf("positions: %v, want node-a's and node-b's", pos)
	}
}

// Two replicas at once on one PostgreSQL schema, each with its journal,
// appending concurrently: each indexer records its own position. A
// crashes with rows only in its journal while B goes on; A's restart
// replays exactly those, and B's rows are neither lost nor doubled.
func TestJournalPositionTwoReplicas(t *testing.T) {
	dsn := testDSN(t)
	schema := pgtest.FreshSchema(t, dsn, "egressd_at_")
	dir := t.TempDir()
	path := filepath.Join(dir, "shared")
	a := openNode(t, path, "node-a", openPostgres(t, dsn, schema))
	b := openNode(t, path, "node-b", openPostgres(t, dsn, schema))
	var wg sync.WaitGroup
	wg.Go(func() { appendRows(t, a, 0, 200) })
	wg.Go(func() { appendRows(t, b, 1000, 1200) })
	wg.Wait()
	if err := a.Sync(); err != nil {
		t.Fatal(err)
	}
	crash(t, a)
	journalAppend(t, filepath.Join(dir, "node-a.journal"), rowsOf(200, 230)...)
	appendRows(t, b, 1200, 1300)
	if err := b.Sync(); err != nil {
		t.Fatal(err)
	}

	a = openNode(t, path, "node-a", openPostgres(t, dsn, schema))
	wantRows(t, a, [2]int{0, 230}, [2]int{1000, 1300})
	wantRows(t, b, [2]int{0, 230}, [2]int{1000, 1300})
	if pos := positions(t, b); len(pos) != 2 {
		t.Errorf("positions %v, want node-a's and node-b's", pos)
	}
}
