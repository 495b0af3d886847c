package vault

import (
	"sync"
	"sync/atomic"
	"time"

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
)

// auditIndexer puts journaled rows into the store's audit buckets. One goroutine
// gathers them for up to indexMaxWait or indexMaxRows and writes them in
// one transaction; a row written twice in that window (the proxy's
// provisional row and its final one share a key) is written once, as its
// last version. Readers call flush to have it commit at once. Groups and
// flushes go through one channel, so a flush covers every group handed
// over before it.
type auditIndexer struct {
	db storage.Backend
	in chan indexMsg
	// posKey is the bMeta key of the journal position (journal.posKey).
	posKey []byte

	mu     sync.RWMutex // guards closed against sends on the closed channel
	closed bool
	exited chan struct{}
	// failed is the error of the last commit while it failed and rows are
	// piling up, nil otherwise.
	failed atomic.Pointer[error]
	// final is the error rows were left with when the indexer stopped.
	final error

	pending []auditEntry
	pos     map[string]int // key → index in pending
	// upto is where the last group taken ends in the journal: a commit
	// records it with the rows (under posKey).
	upto journalPos
}

// indexMsg is a journaled group and where it ends in the journal, or a
// flush (reply set).
type indexMsg struct {
	entries []auditEntry
	upto    journalPos
	reply   chan error
}

func newAuditIndexer(db storage.Backend, posKey []byte) *auditIndexer {
	x := &auditIndexer{db: db, posKey: posKey, in: make(chan indexMsg, indexQueue), exited: make(chan struct{}), pos: map[string]int{}}
	go x.run()
	return x
}

// add hands over a journaled group, which ends at upto in the journal;
// the indexer keeps entries. Only the committer calls it, and never after
// close.
func (x *auditIndexer) add(entries []auditEntry, upto journalPos) {
	x.in <- indexMsg{entries: entries, upto: upto}
}

// failing is the last commit's error while commits fail and rows pile up:
// the committer then refuses new rows rather than grow the journal
// without end.
func (x *auditIndexer) failing() error {
	if p := x.failed.Load(); p != nil {
		return *p
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
				x.take(m.entries)
				x.upto = m.upto
				if !armed {
					timer.Reset(indexMaxWait)
					armed = true
				}
			}
			if len(waiters) == 0 && len(x.pending) < indexMaxRows {
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
		case len(x.pending) == 0:
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

// take adds entries to pending, a row already pending replaced in place.
func (x *auditIndexer) take(entries []auditEntry) {
	for _, e := range entries {
		// string(e.key) in a lookup does not allocate: a row replacing its
		// pending version (a request's final row) costs no key copy.
		if i, ok := x.pos[string(e.key)]; ok {
			x.pending[i] = e
			continue
		}
		x.pos[string(e.key)] = len(x.pending)
		x.pending = append(x.pending, e)
	}
}

// commit writes pending in one transaction, with the journal position
// they come up to. On failure pending is kept for the next try.
func (x *auditIndexer) commit() error {
	if len(x.pending) == 0 {
		return nil
	}
	err := x.db.Update(func(tx storage.Tx) error {
		b := txAuditBuckets(tx)
		for i := range x.pending {
			if err := b.put(&x.pending[i]); err != nil {
				return err
			}
		}
		return tx.Bucket(bMeta).Put(x.posKey, x.upto.encode())
	})
	if err != nil {
		if len(x.pending) >= 8*indexMaxRows {
			x.failed.Store(&err)
		}
		return err
	}
	x.failed.Store(nil)
	clear(x.pending)
	x.pending = x.pending[:0]
	clear(x.pos)
	return nil
}
