package storage

import "time"

// AuditTx is implemented by the transactions of a backend that keeps the
// vault's audit log itself, in a store of its own made for it
// (vault/pgstore: a table partitioned by day), rather than in the vault's
// audit buckets. It is optional: a backend whose transactions do not
// implement it (vault/boltstore) gets the audit log as buckets, keys and
// index keys, like any other data.
//
// The audit log (package audit) asks a transaction, not the Backend, so
// that a wrapper around a Backend (one that counts or fails its Updates)
// keeps the backend's audit store: one backend never has its audit rows
// in two places.
//
// Package audit validates and encodes every row above the seam (the same
// checks on either path); a row holds ids, names and what a request did,
// never a secret's value.
type AuditTx interface {
	Tx
	// PutAudit writes recs inside this Update (or Batch) transaction:
	// they commit with it or not at all (an admin row with the write it
	// records). A record with the tenant, time and id of one already
	// stored replaces it. An error fails the transaction.
	PutAudit(recs []AuditRecord) error
	// AuditStore is the backend's audit store, for what runs outside a
	// vault transaction.
	AuditStore() AuditStore
}

// AuditStore keeps the audit log of a backend whose transactions
// implement AuditTx. Its methods run in transactions of their own, apart
// from the backend's Updates: shipping rows does not wait for the
// serialized admin writes of every replica.
type AuditStore interface {
	// AppendAudit writes recs (replacing, as PutAudit does, a record of
	// the same tenant, time and id) and puts mark in the same
	// transaction: the audit journal's position, so a position recorded
	// always covers exactly the records written. Many records at once:
	// the node's indexer ships thousands a call.
	AppendAudit(recs []AuditRecord, mark AuditMark) error
	// QueryAudit returns up to q.Limit records of q.TenantID that match
	// q, newest first (by time, then id, descending).
	QueryAudit(q AuditQuery) ([]AuditRecord, error)
	// ScanAudit returns up to limit records after position after (all
	// when after is zero) and at or after since (zero: from the first),
	// oldest first by (time, id, tenant): of tenant, or of every tenant
	// when tenant is empty.
	ScanAudit(tenant string, since time.Time, after AuditPos, limit int) ([]AuditRecord, error)
	// DeleteAudit deletes every record (of every tenant) older than
	// before and returns how many it deleted; a backend may drop whole
	// stretches (a day's partition) at once.
	DeleteAudit(before time.Time) (int64, error)
	// CountAudit counts every record.
	CountAudit() (int64, error)
}

// AuditRecord is one audit row as the backend keeps it: the fields that
// its queries filter on, and the row itself as package audit encoded it.
type AuditRecord struct {
	TenantID string
	// Time is the row's time (nanoseconds kept: the order of rows).
	Time time.Time
	ID   string
	Kind string
	// Outcome, ExternalUserID, ExternalWorkspaceID, SandboxID and
	// SecretID are empty when the row has none.
	Outcome             string
	ExternalUserID      string
	ExternalWorkspaceID string
	SandboxID           string
	SecretID            string
	// UseSecretIDs are the other secrets the row is about (a request's
	// uses that resolved to a secret other than SecretID); a query by
	// secret matches either.
	UseSecretIDs []string
	// Data is the row's encoding (package audit's binary one; JSON for rows
	// written before it), stored and returned as it is.
	Data []byte
}

// AuditPos is a place in the log: a record's time, id and tenant.
type AuditPos struct {
	Time   time.Time
	ID     string
	Tenant string
}

// IsZero says p is no position.
func (p AuditPos) IsZero() bool { return p.ID == "" }

// AuditQuery selects records of one tenant. Empty fields match all.
type AuditQuery struct {
	TenantID string
	// Since (inclusive) and Until (exclusive) bound the time; zero is
	// unbounded.
	Since, Until time.Time
	// Before, when set, keeps records strictly before it in the query's
	// order (time, then id): the previous page's last record.
	Before              AuditPos
	ExternalUserID      string
	ExternalWorkspaceID string
	SandboxID           string
	// SecretID matches SecretID or one of UseSecretIDs.
	SecretID string
	Outcome  string
	Kind     string
	// Limit is the most records returned (positive).
	Limit int
}

// AuditMark is a key put in the same transaction as AppendAudit's
// records.
type AuditMark struct {
	Bucket, Key, Value []byte
}
