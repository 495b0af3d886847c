// Package pgstore is the vault's PostgreSQL backend: vault/storage on one
// PostgreSQL database, shared by every egressd replica of a cluster
// (driver github.com/jackc/pgx/v5 with its pool).
//
// Data: every bucket's keys in one table, kv (bucket text, key bytea,
// value bytea, primary key (bucket, key)), beside buckets (name) and
// schema_migrations, all in one schema (Options.Schema, default egressd).
// One table rather than one per bucket: a new bucket is a row, not DDL
// run by whichever replica starts first; no table name is ever built from
// a bucket's name; a migration changes one table. The primary key's
// B-tree gives each bucket its keys in bytewise order (bytea has no
// collation), which cursors read in pages with keyset pagination.
//
// Transactions:
//   - Update (and Batch, which is Update) runs READ COMMITTED and first
//     takes a transaction-scoped advisory lock that every replica's
//     Update takes (pg_advisory_xact_lock on the schema): updates run one
//     at a time across the cluster, as bbolt's one writer does, so the
//     vault's read-check-write code stays correct unchanged, and no
//     serialization failure ever needs a retry. Admin writes are rare and
//     short; the proxy's hot path only reads. READ COMMITTED, not
//     REPEATABLE READ: a snapshot taken before the lock was granted would
//     miss the commit of the update that held it; after the lock every
//     statement sees every earlier update.
//   - View runs REPEATABLE READ READ ONLY: one snapshot for its whole run,
//     never waiting for a writer nor making one wait.
//   - Everything runs on the transaction's pgx.Tx, so Get and cursors see
//     the transaction's own writes; each transaction has Options.TxTimeout
//     from begin to commit.
//
// Get, Put (INSERT … ON CONFLICT DO UPDATE) and Delete are one statement
// each. The seam's Get and cursor moves return no error: a statement that
// fails marks its transaction failed, later reads answer nil, writes
// return the error, and View or Update returns it (not fn's own error,
// which may only be the consequence of a read that came back nil).
//
// The schema is made by embedded, versioned migrations, applied by Open
// (and Migrate) under a session advisory lock, so replicas that start
// together migrate once; a schema newer than this egressd knows is
// refused (ErrSchemaTooNew).
//
// Every Store is also a storage.ChangeFeed for the replicas on its
// schema (feed.go): a change log table, NOTIFY in the writing
// transaction, and a listener connection per Store.
//
// The audit log is not in kv: the Store is a storage.AuditStore (its
// transactions storage.AuditTx) over the table audit, partitioned by day,
// which the replicas' indexers ship to with COPY (audit.go).
//
// Errors wrap pgx's with %w; none quotes the DSN (its password).
package pgstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/egressd/egressd/vault/storage"
)

var _ storage.Backend = (*Store)(nil)

// Defaults of Options' zero values.
const (
	DefaultSchema    = "egressd"
	DefaultTxTimeout = time.Minute
	DefaultPageSize  = 256
)

// Advisory lock classes (the first key of the two-key form; the second is
// hashtext of the schema), as pg_locks shows them in classid.
const (
	lockMigrate int32 = 0x65677201 // session lock of Open's migrations
	lockUpdate  int32 = 0x65677202 // transaction lock of every Update
)

// Options configures Open and Migrate. The zero value is usable.
type Options struct {
	// Schema is the PostgreSQL schema that holds egressd's tables; Open
	// creates it if it is missing. Empty means DefaultSchema.
	Schema string
	// TxTimeout bounds one transaction from its begin (the wait for the
	// update lock included) to its commit; zero means DefaultTxTimeout.
	TxTimeout time.Duration
	// PageSize is how many rows a cursor reads at a time at most (its
	// first read takes fewer); zero means DefaultPageSize.
	PageSize int
	// MaxConns caps the connection pool; zero leaves pgxpool's default
	// (or the DSN's pool_max_conns). The change listener's connection is
	// one more, outside the pool.
	MaxConns int32

	// ListenerTimeout is how long the change listener may go without
	// hearing from PostgreSQL before Healthy turns false (a half-open
	// connection, a stalled server); it reads the change log every
	// quarter of it when no notification comes. Zero means
	// DefaultListenerTimeout.
	ListenerTimeout time.Duration
	// ReconnectDelay is how long the listener waits before connecting
	// again after losing its connection; each failed try doubles it, up
	// to MaxReconnectDelay. Zero means DefaultReconnectDelay.
	ReconnectDelay time.Duration
	// ChangeRetention is how long rows stay in the change log: a replica
	// whose listener was away for longer catches up by dropping all it
	// cached (storage.TopicAll). Zero means DefaultChangeRetention.
	ChangeRetention time.Duration
	// Registerer receives the change listener's metrics
	// (egressd_store_invalidation_lag_seconds,
	// egressd_store_listener_reconnects_total, egressd_store_listener_up);
	// nil registers none (Store.Collectors has them).
	Registerer prometheus.Registerer
	// NoMigrate opens only a schema that exists at the version this
	// egressd knows: nothing is created or migrated (a read-only tool's
	// mistyped --store-schema must not leave an empty schema behind).
	NoMigrate bool
}

func (o Options) withDefaults() Options {
	if o.Schema == "" {
		o.Schema = DefaultSchema
	}
	if o.TxTimeout <= 0 {
		o.TxTimeout = DefaultTxTimeout
	}
	if o.PageSize <= 0 {
		o.PageSize = DefaultPageSize
	}
	if o.ListenerTimeout <= 0 {
		o.ListenerTimeout = DefaultListenerTimeout
	}
	if o.ReconnectDelay <= 0 {
		o.ReconnectDelay = DefaultReconnectDelay
	}
	if o.ChangeRetention <= 0 {
		o.ChangeRetention = DefaultChangeRetention
	}
	return o
}

// Store is an open PostgreSQL store. It implements storage.Backend.
type Store struct {
	pool   *pgxpool.Pool
	opts   Options
	q      queries
	aq     auditSQL
	closed atomic.Bool
	// writer is held by this process's Update from before it takes a
	// connection until it ends: its other Updates wait here, not on the
	// advisory lock with a connection each, which would leave none for
	// Views.
	writer chan struct{}

	mu    sync.RWMutex
	known map[string]bool // buckets known to exist (never dropped)

	feed *listener // the change feed's listener (feed.go)

	parts partitions // the audit table's partitions known (audit.go)
	// shippedNS is the time of the newest row AppendAudit committed
	// (audit_ship.go): a newer row was never shipped from here.
	shippedNS atomic.Int64
}

// Open connects to the database of dsn (a libpq key=value string or a
// postgres:// URL, pgx's pool_* settings included), applies the
// migrations this egressd knows that it lacks, and returns the store.
func Open(ctx context.Context, dsn string, opts Options) (*Store, error) {
	opts = opts.withDefaults()
	pool, err := newPool(ctx, dsn, opts)
	if err != nil {
		return nil, err
	}
	check := migrate
	if opts.NoMigrate {
		check = checkVersion
	}
	if _, _, err := check(ctx, pool, opts.Schema); err != nil {
		pool.Close()
		return nil, err
	}
	s := &Store{pool: pool, opts: opts, q: newQueries(opts.Schema), aq: newAuditSQL(opts.Schema), writer: make(chan struct{}, 1), known: map[string]bool{}}
	rows, err := pool.Query(ctx, s.q.bucketNames)
	if err == nil {
		var names []string
		names, err = pgx.CollectRows(rows, pgx.RowTo[string])
		for _, n := range names {
			s.known[n] = true
		}
	}
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("pgstore: read buckets: %w", err)
	}
	m := newFeedMetrics()
	if opts.Registerer != nil {
		for _, c := range m.collectors() {
			if err := opts.Registerer.Register(c); err != nil {
				pool.Close()
				return nil, fmt.Errorf("pgstore: register metrics: %w", err)
			}
		}
	}
	s.feed = newListener(ctx, pool, opts, m)
	if err := s.feed.start(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return s, nil
}

func newPool(ctx context.Context, dsn string, opts Options) (*pgxpool.Pool, error) {
	if !validSchema(opts.Schema) {
		return nil, fmt.Errorf("pgstore: schema name %q: want 1 to 63 bytes of UTF-8 without NUL", opts.Schema)
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, ErrBadDSN // pgx's message may quote the DSN
	}
	if opts.MaxConns > 0 {
		cfg.MaxConns = opts.MaxConns
	}
	if _, ok := cfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		cfg.ConnConfig.RuntimeParams["application_name"] = "egressd"
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("pgstore: connection pool: %w", err)
	}
	return pool, nil
}

func validSchema(s string) bool {
	return s != "" && len(s) <= 63 && utf8.ValidString(s) && !containsNUL(s)
}

func validBucket(name []byte) bool {
	return len(name) > 0 && len(name) <= 255 && utf8.Valid(name) && !containsNUL(string(name))
}

func containsNUL(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == 0 {
			return true
		}
	}
	return false
}

// View runs fn in a REPEATABLE READ READ ONLY transaction.
func (s *Store) View(fn func(storage.Tx) error) error { return s.run(false, fn) }

// Update runs fn in a READ COMMITTED transaction that holds the cluster's
// update lock, committed if fn returns nil.
func (s *Store) Update(fn func(storage.Tx) error) error { return s.run(true, fn) }

// Batch is Update: with every update serialized by one lock, grouping
// callers would save a commit but add a wait.
func (s *Store) Batch(fn func(storage.Tx) error) error { return s.run(true, fn) }

func (s *Store) run(write bool, fn func(storage.Tx) error) (err error) {
	if s.closed.Load() {
		return ErrClosed
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.TxTimeout)
	defer cancel()
	txo := pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}
	if write {
		txo = pgx.TxOptions{IsoLevel: pgx.ReadCommitted, AccessMode: pgx.ReadWrite}
		select {
		case s.writer <- struct{}{}:
			defer func() { <-s.writer }()
		case <-ctx.Done():
			return fmt.Errorf("pgstore: wait for this process's other update: %w", ctx.Err())
		}
	}
	ptx, err := s.pool.BeginTx(ctx, txo)
	if err != nil {
		if s.closed.Load() {
			return ErrClosed
		}
		return fmt.Errorf("pgstore: begin: %w", err)
	}
	done := false
	defer func() {
		if !done { // fn failed or panicked
			ptx.Rollback(ctx)
		}
	}()
	if write {
		if _, err := ptx.Exec(ctx, s.q.updateLock, lockUpdate, s.opts.Schema); err != nil {
			return fmt.Errorf("pgstore: update lock: %w", err)
		}
	}
	t := &tx{s: s, ctx: ctx, ptx: ptx, write: write}
	ferr := fn(t)
	if t.err != nil {
		return t.err
	}
	if ferr != nil {
		return ferr
	}
	done = true
	if !write {
		if err := ptx.Rollback(ctx); err != nil {
			return fmt.Errorf("pgstore: end view: %w", err)
		}
		return nil
	}
	if err := ptx.Commit(ctx); err != nil {
		return fmt.Errorf("pgstore: commit: %w", err)
	}
	return nil
}

// EnsureBuckets creates the named buckets that do not exist yet.
func (s *Store) EnsureBuckets(names ...[]byte) error {
	if s.closed.Load() {
		return ErrClosed
	}
	for _, n := range names {
		if !validBucket(n) {
			return fmt.Errorf("%w: %q", ErrBucketName, n)
		}
	}
	if len(names) == 0 {
		return nil
	}
	list := make([]string, len(names))
	for i, n := range names {
		list[i] = string(n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.TxTimeout)
	defer cancel()
	if _, err := s.pool.Exec(ctx, s.q.ensureBuckets, list); err != nil {
		if s.closed.Load() {
			return ErrClosed
		}
		return fmt.Errorf("pgstore: create buckets: %w", err)
	}
	s.mu.Lock()
	for _, n := range list {
		s.known[n] = true
	}
	s.mu.Unlock()
	return nil
}

// Close closes the pool's connections. Transactions must have ended. A
// second Close does nothing.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.feed.stop()
	s.pool.Close()
	return nil
}

// Schema is the PostgreSQL schema that holds the store's tables.
func (s *Store) Schema() string { return s.opts.Schema }

// Pool is the connection pool, for what the seam does not carry (the
// cluster's LISTEN/NOTIFY, the audit table, tests). Its connections'
// search_path is not set: name the schema.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

func (s *Store) bucketKnown(name string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.known[name]
}

func (s *Store) learnBucket(name string) {
	s.mu.Lock()
	s.known[name] = true
	s.mu.Unlock()
}

// errorsIsNoRows reports pgx's "no rows" from QueryRow.Scan.
func errorsIsNoRows(err error) bool { return errors.Is(err, pgx.ErrNoRows) }
