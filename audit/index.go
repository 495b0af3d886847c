package audit

import (
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/egressd/egressd/vault/boltstore"
	"github.com/egressd/egressd/vault/storage"
)

const (
	// indexMaxRows is how many journaled rows the indexer holds before it
	// commits them at once.
	indexMaxRows = 4096
	// indexMaxWait is how long a journaled row waits for its commit to
	// the store at most, when no reader asks for it sooner.
	indexMaxWait = 50 * time.Millisecond
	// indexRetry is how long the indexer waits after a failed commit.
	indexRetry = 100 * time.Millisecond
	// indexQueue bounds the groups handed over and not yet taken: a
	// committer that gets this far ahead waits for the indexer.
	indexQueue = 1024
	// indexChunkRows bounds the rows of one indexer transaction (whole
	// groups, so one group may take it past) on a backend other than
	// bbolt: there every key is a statement of its own (about 7 a row),
	// and a commit of all indexMaxRows and a full group at once, tens of
	// thousands of statements, can outlast the backend's transaction
	// timeout under load; retried whole, it would never commit. On bbolt
	// a transaction's cost is its fsync, so it takes everything at once.
	indexChunkRows = 128
)

// DefaultSpoolMax is Config.SpoolMax's default: the request rows
// a node journals while it cannot ship them to the store before it
// refuses more. Each is held in memory too (about 1 to 2 KB), until
// shipped.
const DefaultSpoolMax = 65536

// auditIndexer puts journaled rows into the store's audit buckets, or
// ships them to a backend's audit store (storage.AuditStore: vault/pgstore
// takes each chunk with one COPY). One goroutine
// gathers them for up to indexMaxWait or indexMaxRows and writes them in
// one transaction (in chunks of whole groups, in journal order, one
// transaction each, each with the position its last group ends at, on a
// backend other than bbolt: indexChunkRows); a row written twice in that
// window (the proxy's provisional row and its final one share a key) is
// written once, as its last version (within a chunk; across chunks the
// later chunk writes over the earlier). Readers call flush to have it
// commit at once. Groups and flushes go through one channel, so a flush
// covers every group handed over before it.
//
// While commits fail (the store is unreachable) the rows stay in the
// journal and here, and commits are retried every indexRetry; once
// spoolMax rows wait, failing refuses new ones (the proxy then answers
// 503 audit_unavailable), and the rows already journaled ship when the
// store is back.
type auditIndexer struct {
	db storage.Backend
	// as is the backend's audit store, nil when the audit log is buckets.
	as storage.AuditStore
	in chan indexMsg
	// posKey is the bMeta key of the journal position (journal.posKey).
	posKey []byte

	mu     sync.RWMutex // guards closed against sends on the closed channel
	closed bool
	exited chan struct{}
	// failed is the error of the last commit while commits fail, nil
	// otherwise.
	failed atomic.Pointer[error]
	// depth counts the rows handed over and not committed yet (a row
	// replaced by its later version before its commit counts once);
	// shipErrors counts failed commits; spoolMax bounds depth while
	// commits fail (failing).
	depth      atomic.Int64
	shipErrors atomic.Uint64
	spoolMax   atomic.Int64
	// final is the error rows were left with when the indexer stopped.
	final error

	// chunks are the rows taken and not committed yet, in journal order:
	// whole groups, at most chunkRows rows a chunk (or one group). Each
	// commits in its own transaction, in order, with the journal position
	// of its last group (under posKey), so a position recorded always
	// covers exactly the groups before it, whatever a crash interrupts.
	chunks    []indexChunk
	chunkRows int
	held      int         // rows in chunks
	spare     *indexChunk // a committed chunk's buffers, for the next
}

// indexChunk is groups of rows that commit in one transaction.
type indexChunk struct {
	entries []auditEntry
	pos     map[string]int // key → index in entries
	// upto is where the chunk's last group ends in the journal.
	upto journalPos
}

// indexMsg is a journaled group and where it ends in the journal, or a
// flush (reply set).
type indexMsg struct {
	entries []auditEntry
	upto    journalPos
	reply   chan error
}

func newAuditIndexer(db storage.Backend, as storage.AuditStore, posKey []byte, spoolMax int) *auditIndexer {
	x := &auditIndexer{db: db, as: as, posKey: posKey, in: make(chan indexMsg, indexQueue), exited: make(chan struct{}), chunkRows: indexChunkRows}
	if _, ok := db.(*boltstore.Store); ok || as != nil {
		// A bbolt commit costs its fsync, a COPY its round trips: both
		// take everything at once.
		x.chunkRows = math.MaxInt
	}
	x.setSpoolMax(spoolMax)
	go x.run()
	return x
}

// setSpoolMax sets the bound of failing; zero or less means
// DefaultSpoolMax.
func (x *auditIndexer) setSpoolMax(n int) {
	if n <= 0 {
		n = DefaultSpoolMax
	}
	x.spoolMax.Store(int64(n))
}

// add hands over a journaled group, which ends at upto in the journal;
// the indexer keeps entries. Only the committer calls it, and never after
// close.
func (x *auditIndexer) add(entries []auditEntry, upto journalPos) {
	x.depth.Add(int64(len(entries)))
	x.in <- indexMsg{entries: entries, upto: upto}
}

// shipping is the last commit's error while commits fail, nil while they
// succeed.
func (x *auditIndexer) shipping() error {
	if p := x.failed.Load(); p != nil {
		return *p
	}
	return nil
}

// failing refuses new rows (ErrUnavailable, with the last commit's
// error) once commits fail and spoolMax rows wait for one: rather than
// grow the journal, and the memory that holds the rows, without end. Rows
// wait in the journal, and a node whose disk is lost loses them: the
// bound is also the most a node can lose so.
func (x *auditIndexer) failing() error {
	p := x.failed.Load()
	if p == nil {
		return nil
	}
	if n, max := x.depth.Load(), x.spoolMax.Load(); n >= max {
		return fmt.Errorf("%w: %d rows wait to be shipped to the store (--audit-spool-max %d), which fails: %w", ErrUnavailable, n, max, *p)
	}
	return nil
}

// flush returns once every group handed over before it was called is
// committed to the store, or with the error of the commit that tried.
func (x *auditIndexer) flush() error {
	reply := make(chan error, 1)
	x.mu.RLock()
	if x.closed {
		x.mu.RUnlock()
		return ErrClosed
	}
	x.in <- indexMsg{reply: reply}
	x.mu.RUnlock()
	return <-reply
}

// close commits what is pending and stops the indexer. It returns the
// error of that last commit, if it failed.
func (x *auditIndexer) close() error {
	x.mu.Lock()
	if !x.closed {
		x.closed = true
		close(x.in)
	}
	x.mu.Unlock()
	<-x.exited
	return x.final
}

func (x *auditIndexer) run() {
	defer close(x.exited)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	armed := false
	var waiters []chan error
	for {
		select {
		case m, ok := <-x.in:
			if !ok {
				x.final = x.commit()
				return
			}
			if m.reply != nil {
				waiters = append(waiters, m.reply)
			}
			if len(m.entries) > 0 {
				x.take(m.entries, m.upto)
				if !armed {
					timer.Reset(indexMaxWait)
					armed = true
				}
			}
			if len(waiters) == 0 && x.held < indexMaxRows {
				continue
			}
		case <-timer.C:
			armed = false
		}
		err := x.commit()
		for _, w := range waiters {
			w <- err
		}
		waiters = waiters[:0]
		switch {
		case x.held == 0:
			if armed {
				timer.Stop()
				armed = false
			}
		case !armed:
			timer.Reset(indexRetry)
			armed = true
		}
	}
}

// take adds a group, which ends at upto in the journal, to the last
// chunk (a new one when that is full), a row already there replaced in
// place.
func (x *auditIndexer) take(entries []auditEntry, upto journalPos) {
	if n := len(x.chunks); n == 0 || len(x.chunks[n-1].entries) >= x.chunkRows {
		c := indexChunk{pos: map[string]int{}}
		if x.spare != nil {
			c, x.spare = *x.spare, nil
		}
		x.chunks = append(x.chunks, c)
	}
	c := &x.chunks[len(x.chunks)-1]
	for _, e := range entries {
		// string(e.key) in a lookup does not allocate: a row replacing its
		// pending version (a request's final row) costs no key copy.
		if i, ok := c.pos[string(e.key)]; ok {
			c.entries[i] = e
			x.depth.Add(-1) // counted once, as the row it replaces
			continue
		}
		c.pos[string(e.key)] = len(c.entries)
		c.entries = append(c.entries, e)
		x.held++
	}
	c.upto = upto
}

// commit writes the chunks in order, each in one transaction with the
// journal position its rows come up to. On failure the chunk that failed
// and those after it are kept for the next try.
func (x *auditIndexer) commit() error {
	for len(x.chunks) > 0 {
		c := &x.chunks[0]
		err := commitChunk(x.db, x.as, c.entries, x.posKey, c.upto)
		if err != nil {
			x.shipErrors.Add(1)
			x.failed.Store(&err)
			return err
		}
		x.held -= len(c.entries)
		x.depth.Add(-int64(len(c.entries)))
		done := *c
		x.chunks[0] = indexChunk{}
		x.chunks = x.chunks[1:]
		clear(done.entries)
		done.entries = done.entries[:0]
		clear(done.pos)
		if x.spare == nil && cap(done.entries) <= 2*indexMaxRows {
			x.spare = &done
		}
	}
	x.chunks = nil
	x.failed.Store(nil)
	return nil
}

// commitChunk writes entries, and the journal position upto under posKey,
// in one transaction: to the backend's audit store (as) when it has one,
// to the audit buckets otherwise.
func commitChunk(db storage.Backend, as storage.AuditStore, entries []auditEntry, posKey []byte, upto journalPos) error {
	if as != nil {
		recs := make([]storage.AuditRecord, len(entries))
		for i := range entries {
			recs[i] = entries[i].rec
		}
		return as.AppendAudit(recs, storage.AuditMark{Bucket: bMeta, Key: posKey, Value: upto.encode()})
	}
	return db.Update(func(tx storage.Tx) error {
		b := txAuditBuckets(tx)
		if err := b.putAll(entries); err != nil {
			return err
		}
		return tx.Bucket(bMeta).Put(posKey, upto.encode())
	})
}
