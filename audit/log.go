// Package audit holds egressd's audit log: its rows (Row, Use) and their
// binary encoding, the node-local journal that makes a request's row
// durable before a value leaves, the group committer in front of it, the
// indexer that ships journaled rows into the store (the audit buckets and
// their index keys on any vault/storage backend, or a backend's own audit
// table, storage.AuditStore), and the reads over it: Query, Summarize,
// Export and Prune. A Log is opened on the vault's backend; an admin row
// is written with Put in the transaction of the write it records, so the
// two commit together. It never holds a secret's value.
package audit

import (
	"fmt"
	"time"

	"github.com/egressd/egressd/vault/storage"
)

// Config configures Open.
type Config struct {
	// Backend is the store the rows go to, holding the buckets of Buckets
	// (and the vault's meta bucket, where the journal's position and the
	// buckets' layout are kept). Required; the Log does not close it.
	Backend storage.Backend
	// JournalPath is the journal (journal.go), the request rows'
	// write-ahead file on this node's disk, whatever the backend. Required.
	JournalPath string
	// NodeID names this node's journal in the store (journalPosKey);
	// empty means the one position of a single node. The caller checks
	// its shape (vault.Config.NodeID).
	NodeID string
	// SpoolMax bounds the request rows journaled while they cannot be
	// shipped to the store; zero means DefaultSpoolMax.
	SpoolMax int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// NoSync skips the journal's fdatasync. Only for tests and benchmarks.
	NoSync bool
}

// Open opens the audit log in cfg.Backend: it brings the rows a backend
// with an audit store still holds in the audit buckets into that store
// (or, on any other backend, the buckets to the current layout), puts the
// journal's rows that a crash left out of the store, and starts the
// committer and the indexer. Close stops them.
func Open(cfg Config) (*Log, error) {
	if cfg.Backend == nil || cfg.JournalPath == "" {
		return nil, fmt.Errorf("audit: no backend or journal path")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	l := &Log{db: cfg.Backend, now: cfg.Now, reqs: make(chan *auditReq), stop: make(chan struct{}), done: make(chan struct{})}
	as, err := StoreOf(cfg.Backend)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	l.as = as
	if l.as != nil {
		if err := l.moveAuditBuckets(); err != nil {
			return nil, err
		}
	} else if err := l.migrateAuditLayout(); err != nil {
		return nil, err
	}
	if l.j, err = l.openAuditJournal(cfg.JournalPath, cfg.NodeID, cfg.NoSync); err != nil {
		return nil, err
	}
	l.idx = newAuditIndexer(l.db, l.as, l.j.posKey, cfg.SpoolMax)
	go l.run()
	return l, nil
}

// StoreOf is b's audit store when its transactions implement
// storage.AuditTx, nil when its audit log is the audit buckets.
func StoreOf(b storage.Backend) (as storage.AuditStore, err error) {
	err = b.View(func(tx storage.Tx) error {
		if atx, ok := tx.(storage.AuditTx); ok {
			as = atx.AuditStore()
		}
		return nil
	})
	return as, err
}
