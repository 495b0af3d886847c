package audit

import (
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/egressd/egressd/vault/storage"
)

const (
	// maxAuditRowsPerCommit bounds one transaction's dirty pages (and
	// the time its writers wait).
	maxAuditRowsPerCommit = 4096
	// auditMaxWait bounds how long the committer gathers callers for
	// one commit.
	auditMaxWait = time.Millisecond
)

// Log is the open audit log of one node (Open): its journal, and the
// committer and indexer in front of the store. Its methods are safe for
// concurrent use.
//
// Its heart is the group commit of request rows: one goroutine (the
// committer) gathers the rows of concurrent Append calls, writes
// them to the audit journal with one write and one fdatasync, hands them
// to the indexer and answers each caller. The indexer (index.go)
// puts them into the store's buckets in larger transactions. Readers of the
// log (Query, Export, Prune) first wait for the indexer to
// commit what it holds, so a row is visible once Append returned.
//
// How many callers to gather the committer learns from the last cycle: as
// many as were pending (inside Append, unanswered) at its peak, and
// every caller still preparing its rows; it commits once they are in, or
// after auditMaxWait. A lone caller is committed at once; 64 closed-loop
// writers settle on batches of 64; a change in load is followed within a
// cycle.
//
// Measured on this 2-core machine with a shared, noisy disk,
// BenchmarkAppendAuditConcurrent, 64 writers, sync mode, rows/s: this loop
// committing each group in its own bbolt transaction (two fsyncs) 28k to
// 36k; committing whatever waits, with no gathering (batches settle at
// about half the writers), 18k to 30k; bbolt's db.Batch with its defaults
// (MaxBatchSize 1000, MaxBatchDelay 10 ms) 4.7k, since every batch waits
// out the delay; db.Batch with MaxBatchSize 64 31k to 40k, but with 63
// writers 4.9k (against 32k here), with 8 writers 0.6k (3.7k here) and
// with 1 writer 160 rows/s (3.5k here): db.Batch is only fast when its
// size matches the number of writers.
type Log struct {
	db storage.Backend
	// as is db's audit store when it keeps the audit log itself (its
	// transactions implement storage.AuditTx), nil when the log is the
	// audit buckets.
	as   storage.AuditStore
	now  func() time.Time
	j    *journal
	reqs chan *auditReq // unbuffered: a send succeeds only into the committer's hands
	stop chan struct{}
	done chan struct{}
	once sync.Once
	// pending counts the callers of Append that have not had their
	// answer: those in the batch being gathered, and those still
	// preparing their rows, about to join it.
	pending atomic.Int64

	idx      *auditIndexer
	closeErr error
}

// auditReq is one Append call waiting for its commit.
type auditReq struct {
	entries []auditEntry
	err     chan error
	// lazy: the caller does not need its rows synced (AppendLater).
	lazy bool
}

var auditReqPool = sync.Pool{New: func() any { return &auditReq{err: make(chan error, 1)} }}

// Close stops the committer after the commit in progress (callers that
// were not taken into it get ErrClosed), then the indexer after it has
// put every journaled row into the store, then rewinds the journal when that
// worked.
func (l *Log) Close() error {
	l.once.Do(func() {
		close(l.stop)
		<-l.done
		err := l.idx.close()
		if err == nil {
			err = l.j.rewind()
		}
		if cerr := l.j.close(); err == nil {
			err = cerr
		}
		l.closeErr = err
	})
	return l.closeErr
}

// Sync waits until every row Append has acknowledged is in the store.
func (l *Log) Sync() error { return l.idx.flush() }

func (l *Log) run() {
	defer close(l.done)
	var batch []*auditReq
	var payloads [][]byte
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
		entries := make([]auditEntry, 0, n)
		payloads = payloads[:0]
		sync := false
		for _, r := range batch {
			sync = sync || !r.lazy
			for i := range r.entries {
				entries = append(entries, r.entries[i])
				payloads = append(payloads, r.entries[i].val)
			}
		}
		err := l.commit(payloads, entries, sync)
		clear(payloads)
		l.pending.Add(-int64(len(batch)))
		for i, r := range batch {
			r.err <- err
			batch[i] = nil
		}
	}
}

// commit journals one group and hands it to the indexer. Past
// journalWrapAt it first has the indexer commit everything and rewinds the
// journal; if the indexer cannot commit, the journal grows instead (not
// asking it again while its commits fail), and the group is refused only
// once the indexer's spool is full (failing).
func (l *Log) commit(payloads [][]byte, entries []auditEntry, sync bool) error {
	if err := l.idx.failing(); err != nil {
		return err
	}
	if l.j.off >= journalWrapAt && l.idx.shipping() == nil {
		if err := l.idx.flush(); err == nil {
			if err := l.j.rewind(); err != nil {
				return err
			}
		}
	}
	if err := l.j.append(payloads, sync); err != nil {
		return err
	}
	l.idx.add(entries, journalPos{l.j.epoch, l.j.off})
	return nil
}

// Append writes rows to the audit log and returns once they are on
// disk: written to the audit journal and fdatasync'd (unless the store was
// opened with NoSync). Concurrent callers share one write and one sync
// (group commit). Query, Export and Prune see them as soon
// as it returns; the indexer has them in the store's buckets within
// indexMaxWait.
//
// Each row needs Kind and TenantID; an empty ID and a zero Time are filled
// in (on a copy: rows is not modified). A row with a bad field fails the
// whole call with ErrInvalid and writes nothing. Writing a row whose ID was
// written before at the same Time replaces it, so a retried call does not
// duplicate rows that carry their own IDs.
func (l *Log) Append(rows ...Row) error { return l.appendAudit(rows, false) }

// AppendLater is Append for rows that need not be on disk when it
// returns: they are written to the journal without a sync of their own,
// and are synced with the next Append group or the indexer's commit
// (within indexMaxWait), whichever comes first. A crash of the process
// loses none of them (the kernel holds what was written); a crash of the
// machine may lose the last of them. The proxy writes a request's final
// row this way: the row that had to be on disk before a value left was
// written with Append.
func (l *Log) AppendLater(rows ...Row) error { return l.appendAudit(rows, true) }

func (l *Log) appendAudit(rows []Row, lazy bool) error {
	if len(rows) == 0 {
		return nil
	}
	l.pending.Add(1)
	r := auditReqPool.Get().(*auditReq)
	r.entries, r.lazy = r.entries[:0], lazy
	for i := range rows {
		row := rows[i]
		e, err := row.prepare(l.now)
		if err == nil {
			err = journalable(&row, &e)
		}
		if err != nil {
			l.pending.Add(-1)
			clear(r.entries)
			auditReqPool.Put(r)
			return err
		}
		r.entries = append(r.entries, e)
	}
	select {
	case l.reqs <- r:
	case <-l.stop:
		l.pending.Add(-1)
		auditReqPool.Put(r)
		return ErrClosed
	}
	err := <-r.err
	clear(r.entries)
	auditReqPool.Put(r)
	return err
}

// journalable refuses what prepare accepts but the journal cannot carry: a
// row too large for a record (refused here, not when the group is written:
// it fails this caller only, not every caller whose rows share the group),
// and ids that are not valid UTF-8, which a backend's audit table keeps
// as text (and which rows written as JSON, before the binary encoding,
// turned into other ids: U+FFFD).
func journalable(r *Row, e *auditEntry) error {
	if len(e.val) > journalMaxRecord {
		return invalid("row", "%d bytes encoded, more than an audit journal record holds (%d)", len(e.val), journalMaxRecord)
	}
	for _, f := range [...]struct{ name, v string }{
		{"tenant_id", r.TenantID}, {"external_user_id", r.ExternalUserID},
		{"external_workspace_id", r.ExternalWorkspaceID}, {"sandbox_id", r.SandboxID}, {"secret_id", r.SecretID},
	} {
		if !utf8.ValidString(f.v) {
			return invalid(f.name, "must be valid UTF-8")
		}
	}
	for _, u := range r.Uses {
		if !utf8.ValidString(u.SecretID) {
			return invalid("uses.secret_id", "must be valid UTF-8")
		}
	}
	return nil
}
