package vault

import (
	"runtime"
	"sync"

	bolt "go.etcd.io/bbolt"
)

const (
	// maxAuditRowsPerCommit bounds one transaction's dirty pages (and
	// the time its writers wait).
	maxAuditRowsPerCommit = 4096
	// auditYields is how often the committer yields to runnable callers
	// before it commits a batch under load.
	auditYields = 2
)

// auditLog is the group commit of request rows: one goroutine takes every
// batch of rows waiting at that moment and writes them all in one bbolt
// transaction with one fsync, then answers each caller.
//
// It waits for nothing: a commit starts as soon as the previous one ends,
// and the callers that arrived meanwhile form the next batch. Under load
// batches grow by themselves (64 writers: about 32 rows a commit) and an
// idle log answers a lone caller after one commit, with no delay added.
// bbolt's db.Batch was measured too (BenchmarkAppendAuditConcurrent/
// bolt-batch): it starts each batch on a timer (MaxBatchDelay) or when
// MaxBatchSize callers wait, so it either adds the delay to every lone
// caller or needs a size that matches the number of writers.
type auditLog struct {
	db   *bolt.DB
	reqs chan *auditReq // unbuffered: a send succeeds only into the committer's hands
	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// auditReq is one AppendAudit call waiting for its commit.
type auditReq struct {
	entries []auditEntry
	err     chan error
}

var auditReqPool = sync.Pool{New: func() any { return &auditReq{err: make(chan error, 1)} }}

func newAuditLog(db *bolt.DB) *auditLog {
	l := &auditLog{db: db, reqs: make(chan *auditReq), stop: make(chan struct{}), done: make(chan struct{})}
	go l.run()
	return l
}

// close stops the committer after the commit in progress; callers that
// were not taken into it get ErrClosed.
func (l *auditLog) close() {
	l.once.Do(func() { close(l.stop) })
	<-l.done
}

func (l *auditLog) run() {
	defer close(l.done)
	var batch []*auditReq
	busy := false // the last batch had more than one caller
	for {
		select {
		case r := <-l.reqs:
			batch = append(batch[:0], r)
		case <-l.stop:
			return
		}
		// Take every caller waiting now. Under load, also yield the
		// processor (at most auditYields times) to the callers that are
		// runnable, most of them answered by the last commit and about to
		// send their next rows. No timer: those that come later form the
		// next batch, and a lone caller is committed at once.
		n, yields := len(batch[0].entries), 0
	take:
		for n < maxAuditRowsPerCommit {
			select {
			case r := <-l.reqs:
				batch = append(batch, r)
				n += len(r.entries)
				continue
			default:
			}
			if !busy || yields == auditYields {
				break take
			}
			yields++
			runtime.Gosched()
		}
		busy = len(batch) > 1
		err := l.db.Update(func(tx *bolt.Tx) error {
			b := txAuditBuckets(tx)
			for _, r := range batch {
				for i := range r.entries {
					if err := b.put(&r.entries[i]); err != nil {
						return err
					}
				}
			}
			return nil
		})
		for i, r := range batch {
			r.err <- err
			batch[i] = nil
		}
	}
}

// AppendAudit writes rows to the audit log and returns once they are
// committed: fsync'd to the file, unless the store was opened with NoSync.
// Concurrent callers share one transaction and one fsync (group commit).
//
// Each row needs Kind and TenantID; an empty ID and a zero Time are filled
// in (on a copy: rows is not modified). A row with a bad field fails the
// whole call with ErrInvalid and writes nothing. Writing a row whose ID was
// written before at the same Time replaces it, so a retried call does not
// duplicate rows that carry their own IDs.
func (s *Store) AppendAudit(rows ...AuditRow) error {
	if len(rows) == 0 {
		return nil
	}
	r := auditReqPool.Get().(*auditReq)
	r.entries = r.entries[:0]
	for i := range rows {
		row := rows[i]
		e, err := row.prepare(s.now)
		if err != nil {
			auditReqPool.Put(r)
			return err
		}
		r.entries = append(r.entries, e)
	}
	select {
	case s.log.reqs <- r:
	case <-s.log.stop:
		auditReqPool.Put(r)
		return ErrClosed
	}
	err := <-r.err
	clear(r.entries)
	auditReqPool.Put(r)
	return err
}
