package audit

import (
	"encoding/binary"
	"errors"
	"os"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/egressd/egressd/vault/boltstore"
	"github.com/egressd/egressd/vault/pgstore"
	"github.com/egressd/egressd/vault/storage"
)

// These tests check what the review found sound: each guards a property
// of the journal that held when it was written.

// A failed fdatasync breaks the journal: that group, and every later one
// (lazy ones too), is refused; Close says so and does not rewind; the next
// Open puts every acknowledged row into the vault once.
func TestReviewJournalFailedSyncBreaks(t *testing.T) {
	d := useDisk(t)
	path := tempPath(t)
	s := openAt(t, path, false)
	for i := range 10 {
		if err := s.Append(journalRow(i)); err != nil {
			t.Fatal(err)
		}
	}
	d.setFail(errors.New("EIO"))
	if err := s.Append(journalRow(10)); err == nil {
		t.Fatal("a group whose sync failed was acknowledged")
	}
	d.setFail(nil) // a retried fsync may "succeed" after losing data
	if err := s.Append(journalRow(11)); err == nil {
		t.Fatal("a group after a failed sync was acknowledged")
	}
	if err := s.AppendLater(journalRow(12)); err == nil {
		t.Fatal("a lazy group after a failed sync was acknowledged")
	}
	// What was acknowledged is still readable.
	if got := countAudit(t, s, "ten_j"); got != 10 {
		t.Fatalf("%d rows, want 10", got)
	}
	if err := s.Close(); err == nil {
		t.Fatal("Close of a broken journal said nothing")
	}
	s = openAt(t, path, false)
	for i := range 10 {
		if _, n := getRow(t, s, "ten_j", journalRow(i).ID); n != 1 {
			t.Fatalf("row %d: %d copies", i, n)
		}
	}
	if got := countAudit(t, s, "ten_j"); got > 11 {
		t.Fatalf("%d rows after reopening", got)
	}
	if err := s.Append(journalRow(20)); err != nil {
		t.Fatalf("after a restart: %v", err)
	}
}

// plantCorrupt puts bytes that are not a row at the key row would have:
// the indexer's put, which reads the old row to drop its index entries,
// fails on it. It returns a func that removes them.
func plantCorrupt(tb testing.TB, s *testLog, row Row) func() {
	tb.Helper()
	if ps := auditTable(s); ps != nil {
		return blockAudit(tb, ps, row) // no bytes to plant: the table refuses the row
	}
	e, err := row.prepare(s.now)
	if err != nil {
		tb.Fatal(err)
	}
	if err := s.db.Update(func(tx storage.Tx) error { return tx.Bucket(bAudit).Put(e.key, []byte("{not json")) }); err != nil {
		tb.Fatal(err)
	}
	return func() {
		if err := s.db.Update(func(tx storage.Tx) error { return tx.Bucket(bAudit).Delete(e.key) }); err != nil {
			tb.Fatal(err)
		}
	}
}

// While the indexer's commits fail, AppendAudit still acknowledges rows
// (they are in the journal), readers get the error, and a provisional row
// followed by its final one ends as the final one once commits work again;
// a Close while they fail does not rewind, and the next Open has them.
func TestReviewJournalIndexerRetryFinalWins(t *testing.T) {
	path := tempPath(t)
	s := openAt(t, path, true)
	blocker := journalRow(99)
	unplant := plantCorrupt(t, s, blocker)
	prov := journalRow(1)
	prov.Outcome, prov.Status = "", 0
	if err := s.Append(blocker, prov); err != nil {
		t.Fatal(err)
	}
	if err := s.Sync(); err == nil {
		t.Fatal("flush over a failing commit returned nil")
	}
	final := journalRow(1)
	final.Status = 200
	if err := s.AppendLater(final); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Query("ten_j", Filter{}); err == nil {
		t.Fatal("a query missed rows silently")
	}
	unplant()
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	if r, n := getRow(t, s, "ten_j", final.ID); n != 1 || r.Status != 200 {
		t.Fatalf("%d rows, status %d: the final row did not win", n, r.Status)
	}

	// Fail again and close: the journal keeps the rows for the next Open.
	second := journalRow(2)
	unplant = plantCorrupt(t, s, second)
	prov2 := second
	prov2.Outcome = ""
	if err := s.Append(prov2); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendLater(second); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err == nil {
		t.Fatal("Close with rows it could not index said nothing")
	}
	// The planted value is still in the store: take it out as an operator
	// would have to, straight in it.
	if ps := closedAuditTable(t, path); ps != nil {
		unblockAudit(t, ps, second)
		ps.Close()
	} else {
		e, _ := second.prepare(time.Now)
		updateClosed(t, path, func(tx storage.Tx) error { return tx.Bucket(bAudit).Delete(e.key) })
	}
	s = openAt(t, path, true)
	if r, n := getRow(t, s, "ten_j", second.ID); n != 1 || r.Outcome != "substituted" {
		t.Fatalf("after reopening: %d rows, outcome %q", n, r.Outcome)
	}
	if got := countAudit(t, s, "ten_j"); got != 3 {
		t.Fatalf("%d rows, want 3", got)
	}
}

// A record of an older epoch behind the tail, even one that starts
// exactly where the current epoch's records end, is never replayed.
func TestReviewJournalStaleRecordNotReplayed(t *testing.T) {
	path := tempPath(t)
	s := openAt(t, path, true)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	jpath := path + ".audit-journal"
	// Epoch E: rows 0..9. Then rewind (as after indexing) and epoch E+1:
	// rows 100, 101, whose end we aim a stale record of E at.
	j, _, err := openJournal(jpath, true)
	if err != nil {
		t.Fatal(err)
	}
	rowVal := func(r Row) []byte {
		e, err := r.prepare(time.Now)
		if err != nil {
			t.Fatal(err)
		}
		return e.val
	}
	var old [][]byte
	for i := range 10 {
		old = append(old, rowVal(journalRow(i)))
	}
	if err := j.append(old, true); err != nil {
		t.Fatal(err)
	}
	staleAt := j.off
	if err := j.append([][]byte{rowVal(journalRow(50))}, true); err != nil {
		t.Fatal(err)
	}
	stale := make([]byte, j.off-staleAt)
	if _, err := j.f.ReadAt(stale, staleAt); err != nil {
		t.Fatal(err)
	}
	if err := j.rewind(); err != nil {
		t.Fatal(err)
	}
	if err := j.append([][]byte{rowVal(journalRow(100)), rowVal(journalRow(101))}, true); err != nil {
		t.Fatal(err)
	}
	if _, err := j.f.WriteAt(stale, j.off); err != nil {
		t.Fatal(err)
	}
	j.close()
	s = openAt(t, path, true)
	if got := countAudit(t, s, "ten_j"); got != 2 {
		t.Fatalf("%d rows replayed, want the 2 of the current epoch", got)
	}
	if _, n := getRow(t, s, "ten_j", journalRow(50).ID); n != 0 {
		t.Fatal("a record of an older epoch was replayed")
	}
}

// A replay that fails part way (its second transaction) leaves the first
// one's rows and position; the next Open puts the rest, each row once.
func TestReviewJournalReplayInterrupted(t *testing.T) {
	path := tempPath(t)
	s := openAt(t, path, true)
	crash(t, s)
	n := indexMaxRows + 100
	rows := make([]Row, n)
	for i := range rows {
		rows[i] = journalRow(i)
	}
	journalAppend(t, path+".audit-journal", rows...)
	// A row of the second transaction cannot be put.
	e, _ := rows[indexMaxRows+50].prepare(time.Now)
	ps := closedAuditTable(t, path)
	var unblock func()
	if ps != nil {
		defer ps.Close()
		unblock = blockAudit(t, ps, rows[indexMaxRows+50])
	} else {
		updateClosed(t, path, func(tx storage.Tx) error { return tx.Bucket(bAudit).Put(e.key, []byte("{")) })
	}
	if s, err := openCfg(t, path, Config{NoSync: true}); err == nil {
		s.Close()
		t.Fatal("a failed replay opened the log")
	}
	var got int
	if ps != nil {
		got = storedAuditCount(t, nil, ps) + 1 // the planted row is a constraint there, not a row
		unblock()
	} else {
		updateClosed(t, path, func(tx storage.Tx) error {
			got = countKeys(tx.Bucket(bAudit))
			return tx.Bucket(bAudit).Delete(e.key)
		})
	}
	if got != indexMaxRows+1 {
		t.Fatalf("after the failed replay: %d keys, want the first transaction's %d and the planted one", got, indexMaxRows)
	}
	s = openAt(t, path, true)
	if c := countAudit(t, s, "ten_j"); c != n {
		t.Fatalf("%d rows, want %d", c, n)
	}
}

// Many writers (sync and lazy), readers and a Close at once: every
// acknowledged row is there once after reopening, calls after Close get
// ErrClosed, and no goroutine is left.
func TestReviewJournalConcurrentClose(t *testing.T) {
	before := runtime.NumGoroutine()
	path := tempPath(t)
	s, err := openCfg(t, path, Config{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		acked = map[string]bool{}
		seq   atomic.Int64
		wg    sync.WaitGroup
		stop  atomic.Bool
	)
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				r := journalRow(int(seq.Add(1)))
				write := s.Append
				if w%2 == 1 {
					write = s.AppendLater
				}
				err := write(r)
				if err == nil {
					mu.Lock()
					acked[r.ID] = true
					mu.Unlock()
				} else if !errors.Is(err, ErrClosed) {
					t.Error(err)
					return
				}
			}
		}()
	}
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				_, _, err := s.Query("ten_j", Filter{Limit: 10})
				if err != nil && !errors.Is(err, ErrClosed) && !errors.Is(err, boltstore.ErrClosed) && !errors.Is(err, pgstore.ErrClosed) {
					t.Error(err)
					return
				}
			}
		}()
	}
	// On PostgreSQL the writers run 30 ms: the indexer puts each row with
	// about 7 statements (in chunks of indexChunkRows), and the tens of
	// thousands of rows 300 ms of journal appends acknowledge take minutes
	// to index under -race on a 2-core machine. They still journal far
	// more than the indexer takes meanwhile (the backlog the indexer's
	// queue bounds), so the Close alone takes up to a minute or two there.
	run := 300 * time.Millisecond
	if onPostgres() {
		run = 30 * time.Millisecond
	}
	time.Sleep(run)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		mu.Lock()
		n := len(acked)
		mu.Unlock()
		if n >= 100 {
			break
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	stop.Store(true)
	wg.Wait()
	if err := s.Append(journalRow(0)); !errors.Is(err, ErrClosed) {
		t.Fatalf("append after Close: %v", err)
	}
	if err := s.Sync(); !errors.Is(err, ErrClosed) {
		t.Fatalf("flush after Close: %v", err)
	}
	settle := 2 * time.Second
	if onPostgres() {
		// pgx closes a connection a Close interrupted in the background,
		// draining it for up to 15 s (pgconn's asyncClose), and the test
		// suite's admin pool pings its idle connections now and then.
		settle = 20 * time.Second
	}
	deadline := time.Now().Add(settle)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if g := runtime.NumGoroutine(); g > before {
		var stacks strings.Builder
		pprof.Lookup("goroutine").WriteTo(&stacks, 1)
		t.Errorf("%d goroutines after Close, %d before:\n%s", g, before, stacks.String())
	}
	s = openAt(t, path, true)
	got := map[string]int{}
	for _, r := range allAudit(t, s, "ten_j") {
		got[r.ID]++
	}
	for id := range acked {
		if got[id] != 1 {
			t.Fatalf("acknowledged row %s: %d copies", id, got[id])
		}
	}
	if len(acked) < 100 {
		t.Fatalf("only %d rows acknowledged", len(acked))
	}
}

// With the indexer stuck in a commit (its channel filling and the
// committer waiting on it) readers that flush wait, and all of it
// finishes once the commit can go on: no deadlock.
func TestReviewJournalFullChannelNoDeadlock(t *testing.T) {
	path := tempPath(t)
	s := openAt(t, path, true)
	// Hold the writer lock: the indexer's next commit waits for it.
	hold, held := make(chan struct{}), make(chan struct{})
	go s.db.Update(func(storage.Tx) error {
		close(held)
		<-hold
		return nil
	})
	<-held
	var wg sync.WaitGroup
	n := indexMaxRows + indexQueue + 500
	errs := make(chan error, 9)
	wg.Add(1)
	go func() {
		defer wg.Done()
		// One caller at a time: each call is a group of its own.
		for i := range n {
			if err := s.Append(journalRow(i)); err != nil {
				errs <- err
				return
			}
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for len(s.idx.in) < cap(s.idx.in) {
		if time.Now().After(deadline) {
			close(hold)
			select {
			case err := <-errs:
				t.Fatalf("the indexer's channel never filled (%d): %v", len(s.idx.in), err)
			default:
			}
			buf := make([]byte, 1<<20)
			t.Fatalf("the indexer's channel never filled (%d)\n%s", len(s.idx.in), buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(time.Millisecond)
	}
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, _, err := s.Query("ten_j", Filter{Limit: 1}); err != nil {
				errs <- err
			}
		}()
	}
	time.Sleep(500 * time.Millisecond)
	close(hold)
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		buf := make([]byte, 1<<20)
		t.Fatalf("deadlock:\n%s", buf[:runtime.Stack(buf, true)])
	}
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := countAudit(t, s, "ten_j"); got != n {
		t.Fatalf("%d rows, want %d", got, n)
	}
}

// The journal is created 0600, and the rows a crash left in it go into
// the store at the next Open (vault's TestAuditJournalRekey: with a
// rekey between).
func TestReviewJournalMode(t *testing.T) {
	path := tempPath(t)
	s := openAt(t, path, true)
	fi, err := os.Stat(path + ".audit-journal")
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("journal mode %v", fi.Mode().Perm())
	}
	if err := s.Append(journalRow(1)); err != nil {
		t.Fatal(err)
	}
	crash(t, s)
	journalAppend(t, path+".audit-journal", journalRow(2))
	s = openAt(t, path, true)
	if got := countAudit(t, s, "ten_j"); got != 2 {
		t.Fatalf("%d rows, want 2", got)
	}
}

// A torn record in the middle of a group (its bytes half written) ends
// the replay there: the records before it are put, none after it.
func TestReviewJournalTornMiddle(t *testing.T) {
	path := tempPath(t)
	s := openAt(t, path, true)
	crash(t, s)
	rows := make([]Row, 5)
	for i := range rows {
		rows[i] = journalRow(i)
	}
	jpath := path + ".audit-journal"
	journalAppend(t, jpath, rows...)
	data, err := os.ReadFile(jpath)
	if err != nil {
		t.Fatal(err)
	}
	// Walk to the third record and zero the second half of its payload.
	off := journalHeaderLen
	for range 2 {
		off += journalRecHeaderLen + int(binary.LittleEndian.Uint32(data[off:]))
	}
	n := int(binary.LittleEndian.Uint32(data[off:]))
	clear(data[off+journalRecHeaderLen+n/2 : off+journalRecHeaderLen+n])
	if err := os.WriteFile(jpath, data, 0o600); err != nil {
		t.Fatal(err)
	}
	s = openAt(t, path, true)
	for i := range rows {
		_, n := getRow(t, s, "ten_j", rows[i].ID)
		if want := map[bool]int{true: 1, false: 0}[i < 2]; n != want {
			t.Fatalf("row %d: %d copies, want %d", i, n, want)
		}
	}
}
