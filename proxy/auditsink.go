package proxy

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/egressd/egressd/audit"
	"github.com/egressd/egressd/vault"
)

// VaultSink stores the proxy's events as rows of the vault's audit log.
// In sync mode the record written before a value leaves is on disk before
// Record returns (many concurrent requests share one journal write and one
// fdatasync: the vault's group commit); in journal mode it is written to
// the audit journal before Record returns, without waiting for a sync
// (vault.Store.AppendAuditLater: an egressd crash loses none, a power
// loss may lose the last ones). The final record, which completes that
// row with status and duration, and the rows of refused requests go
// through a bounded queue to a background writer, off the request's path,
// which writes them without waiting for a sync of their own. In async mode
// every row is queued. A full queue drops the row and counts it.
type VaultSink struct {
	store   *vault.Store
	log     *slog.Logger
	async   bool
	journal bool

	// queue holds pointers, not rows: a buffered channel's ring is
	// allocated whole and, as its index goes round, every slot ends up
	// resident; 65536 rows of 400 bytes were 25 MiB of the process's
	// anonymous memory (and of what each GC cycle scans), 65536 pointers
	// are 512 KiB. The rows come from rowPool and go back once written.
	queue   chan *audit.Row
	wg      sync.WaitGroup
	once    sync.Once
	mu      sync.RWMutex // guards closed against sends on the closed queue
	closed  bool
	depth   prometheus.GaugeFunc
	dropped prometheus.Counter
	failed  prometheus.Counter
}

// SinkConfig configures NewVaultSink.
type SinkConfig struct {
	// Async queues rows instead of committing them before Record returns.
	Async bool
	// Journal writes the record made before a value leaves to the audit
	// journal without waiting for its sync (ignored with Async).
	Journal bool
	// QueueSize bounds the async queue; zero means 65536.
	QueueSize int
	// Logger gets write failures; nil discards.
	Logger *slog.Logger
	// Registerer receives the queue metrics; nil registers nothing.
	Registerer prometheus.Registerer
}

// NewVaultSink starts a sink over store. Close it before closing the store.
func NewVaultSink(store *vault.Store, cfg SinkConfig) (*VaultSink, error) {
	if cfg.QueueSize == 0 {
		cfg.QueueSize = 1 << 16
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &VaultSink{store: store, log: cfg.Logger, async: cfg.Async, journal: cfg.Journal, queue: make(chan *audit.Row, cfg.QueueSize)}
	s.wg.Add(1)
	go s.drain()
	s.depth = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "egressd_audit_queue_depth", Help: "Audit rows waiting to be written (async mode).",
	}, func() float64 { return float64(len(s.queue)) })
	s.dropped = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "egressd_audit_rows_dropped_total", Help: "Audit rows dropped because the async queue was full.",
	})
	s.failed = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "egressd_audit_write_errors_total", Help: "Audit writes that failed.",
	})
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{s.depth, s.dropped, s.failed} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return s, nil
}

// Record stores ev as an audit row. Events without a tenant (a CONNECT
// refused before the sandbox was known) are not rows of any tenant's log;
// the decision line has them.
func (s *VaultSink) Record(_ context.Context, ev *Event) error {
	if ev.TenantID == "" {
		return nil
	}
	if s.async || ev.Final {
		s.mu.RLock()
		defer s.mu.RUnlock()
		if s.closed {
			s.dropped.Inc()
			return vault.ErrClosed
		}
		row := rowPool.Get().(*audit.Row)
		rowOf(ev, row)
		select {
		case s.queue <- row:
		default:
			putRow(row)
			s.dropped.Inc()
		}
		return nil
	}
	// Called directly, not through a method value: the row (400 bytes)
	// then stays on this stack.
	var row audit.Row
	rowOf(ev, &row)
	var err error
	if s.journal {
		err = s.store.AppendAuditLater(row)
	} else {
		err = s.store.AppendAudit(row)
	}
	if err != nil {
		s.failed.Inc()
		return err
	}
	return nil
}

// gatherWait is how long the background writer lets rows gather after
// the first of a batch arrived, unless a whole batch waits already. A
// writer that took each row as it came woke (and woke the vault's
// committer and indexer, and wrote the journal) for every two or three
// rows at 9,000 requests a second: about 11 µs of CPU a request in
// egress-bench's mitm-header with --audit async, a fifth of the proxy's
// CPU. Asleep, it is not woken by the rows queued meanwhile, and one
// batch, one journal write, carries the rows of gatherWait. A row waits
// that much longer before it is written (rows still queued are lost
// with the process either way: async mode's bargain; Close writes them).
const gatherWait = 5 * time.Millisecond

// drainBatch bounds the rows of one write.
const drainBatch = 256

// drain writes queued rows in batches.
func (s *VaultSink) drain() {
	defer s.wg.Done()
	batch := make([]audit.Row, 0, drainBatch)
	for row := range s.queue {
		batch = append(batch[:0], *row)
		putRow(row)
		if len(s.queue) < drainBatch-1 {
			time.Sleep(gatherWait)
		}
	fill:
		for len(batch) < cap(batch) {
			select {
			case r, ok := <-s.queue:
				if !ok {
					break fill
				}
				batch = append(batch, *r)
				putRow(r)
			default:
				break fill
			}
		}
		err := s.write(batch)
		if errors.Is(err, vault.ErrInvalid) && len(batch) > 1 {
			// One bad row refuses the whole call: write the others one
			// by one, so only the bad one is lost.
			for i := range batch {
				s.write(batch[i : i+1])
			}
		}
		clear(batch) // the written rows' strings are not kept
	}
}

// write appends rows, retrying a few times on errors other than a bad row
// or a closed store; a failure is counted and logged (without the rows).
func (s *VaultSink) write(rows []audit.Row) error {
	for attempt := 0; ; attempt++ {
		err := s.store.AppendAuditLater(rows...)
		if err == nil {
			return nil
		}
		if errors.Is(err, vault.ErrInvalid) && len(rows) > 1 {
			return err // the caller writes them one by one
		}
		s.failed.Inc()
		if errors.Is(err, vault.ErrInvalid) || errors.Is(err, vault.ErrClosed) || attempt == 3 {
			s.log.Error("audit rows lost", "rows", len(rows), "err", err.Error())
			return err
		}
		time.Sleep(time.Duration(attempt+1) * 50 * time.Millisecond)
	}
}

// Close stops accepting rows and writes the queued ones.
func (s *VaultSink) Close() {
	s.once.Do(func() {
		s.mu.Lock()
		s.closed = true
		close(s.queue)
		s.mu.Unlock()
		s.wg.Wait()
	})
}

// rowPool holds the rows of the queue.
var rowPool = sync.Pool{New: func() any { return new(audit.Row) }}

// putRow gives a queued row back, its strings and uses let go.
func putRow(r *audit.Row) {
	*r = audit.Row{}
	rowPool.Put(r)
}

// rowOf fills r from an event: the identity chain, the request (path
// without query), and every use. Never a value.
func rowOf(ev *Event, r *audit.Row) {
	*r = audit.Row{
		ID: ev.ID, Time: ev.Time, Kind: audit.KindRequest,
		TenantID: ev.TenantID, WorkspaceID: ev.WorkspaceID, OwnerUserID: ev.OwnerUserID,
		ExternalUserID: ev.ExternalUserID, ExternalWorkspaceID: ev.ExternalWorkspaceID,
		ExternalProjectID: ev.ExternalProjectID, SandboxID: ev.SandboxID,
		Host: ev.Host, Method: ev.Method, Path: ev.Path, Status: ev.Status,
		Outcome: string(ev.Outcome), Reason: ev.Reason,
		DurationMS: float64(ev.Duration.Microseconds()) / 1000,
	}
	for _, u := range ev.Uses {
		if r.SecretID == "" && u.SecretID != "" && u.Action == ActionSubstituted {
			r.SecretID, r.SecretName, r.SecretVersion, r.Level = u.SecretID, u.Name, u.Version, u.Level
		}
		r.Uses = append(r.Uses, audit.Use{
			Name: u.Name, SecretID: u.SecretID, Version: u.Version, Level: u.Level,
			Location: string(u.Location), Action: string(u.Action), Reason: u.Reason, Leak: u.Leak, LeakSandboxID: u.LeakSandboxID,
		})
	}
	if r.SecretID == "" {
		for _, u := range ev.Uses {
			if u.SecretID != "" {
				r.SecretID, r.SecretName, r.SecretVersion, r.Level = u.SecretID, u.Name, u.Version, u.Level
				break
			}
		}
	}
	if ev.UsesDropped > 0 {
		r.Details = map[string]string{"uses_dropped": strconv.Itoa(ev.UsesDropped)}
	}
}
