package vault

import (
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

const (
	// maxAuditRowsPerCommit bounds one transaction's dirty pages (and
	// the time its writers wait).
	maxAuditRowsPerCommit = 4096
	// auditMaxWait bounds how long the committer gathers callers for
	// one commit.
	auditMaxWait = time.Millisecond
)

// auditLog is the group commit of request rows: one goroutine gathers the
// rows of concurrent AppendAudit calls, writes them in one bbolt
// transaction with one fsync (bbolt syncs twice a commit: pages, then
// meta), and answers each caller.
//
// How many callers to gather it learns from the last cycle: as many as
// were pending (inside AppendAudit, unanswered) at its peak, and every
// caller still preparing its rows; it commits once they are in, or after
// auditMaxWait. A lone caller is committed at once; 64 closed-loop writers
// settle on batches of 64; a change in load is followed within a cycle.
//
// Measured on this 2-core machine with a shared, noisy disk (fsync of a
// commit about 0.3 to 2 ms), BenchmarkAppendAuditConcurrent, 64 writers,
// sync mode, rows/s: this loop 28k to 36k; committing whatever waits, with
// no gathering (batches settle at about half the writers), 18k to 30k;
// bbolt's db.Batch with its defaults (MaxBatchSize 1000, MaxBatchDelay
// 10 ms) 4.7k, since every batch waits out the delay; db.Batch with
// MaxBatchSize 64 31k to 40k, but with 63 writers 4.9k (against 32k here),
// with 8 writers 0.6k (3.7k here) and with 1 writer 160 rows/s (3.5k here):
// db.Batch is only fast when its size matches the number of writers.
type auditLog struct {
	db   *bolt.DB
	reqs chan *auditReq // unbuffered: a send succeeds only into the committer's hands
	stop chan struct{}
	done chan struct{}
	once sync.Once
	// pending counts the callers of AppendAudit that have not had their
	// answer: those in the batch being gathered, and those still
	// preparing their rows, about to join it.
	pending atomic.Int64
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
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	target := int64(1) // callers to gather: as many as were pending in the last cycle
	for {
		select {
		case r := <-l.reqs:
			batch = append(batch[:0], r)
		case <-l.stop:
			return
		}
		n, peak := len(batch[0].entries), l.pending.Load()
		timer.Reset(auditMaxWait)
	take:
		for n < maxAuditRowsPerCommit {
			var r *auditReq
			select {
			case r = <-l.reqs:
			default:
				if int64(len(batch)) >= target && int64(len(batch)) >= l.pending.Load() {
					break take
				}
				select {
				case r = <-l.reqs:
				case <-timer.C:
					break take
				case <-l.stop:
					break take
				}
			}
			batch = append(batch, r)
			n += len(r.entries)
			peak = max(peak, l.pending.Load())
		}
		timer.Stop()
		target = peak
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
		l.pending.Add(-int64(len(batch)))
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
	s.log.pending.Add(1)
	r := auditReqPool.Get().(*auditReq)
	r.entries = r.entries[:0]
	for i := range rows {
		row := rows[i]
		e, err := row.prepare(s.now)
		if err != nil {
			s.log.pending.Add(-1)
			auditReqPool.Put(r)
			return err
		}
		r.entries = append(r.entries, e)
	}
	select {
	case s.log.reqs <- r:
	case <-s.log.stop:
		s.log.pending.Add(-1)
		auditReqPool.Put(r)
		return ErrClosed
	}
	err := <-r.err
	clear(r.entries)
	auditReqPool.Put(r)
	return err
}
