package vault

import (
	"encoding/binary"
	"math"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/egressd/egressd/vault/storage"
)

// How the audit log is laid out in the file: rows in bAudit keyed tenant
// \0 time \0 id, where time is 8 big-endian bytes that sort as the times
// do; and one index bucket per filterable id, keyed tenant \0 value \0
// time \0 id with an empty value. Ids of tenants and values never hold a
// \0 (AuditRow.prepare refuses them), so each prefix ends where its \0 is.

// Index buckets of the audit log, each keyed tenant \0 value \0 time \0 row
// id with an empty value; the row is found in bAudit from the key alone.
var (
	bAuditByExtUser      = []byte("audit_ext_user")      // external_user_id
	bAuditByExtWorkspace = []byte("audit_ext_workspace") // external_workspace_id
	bAuditBySandbox      = []byte("audit_sandbox")       // sandbox_id
	bAuditBySecret       = []byte("audit_secret")        // secret_id and every Uses[].secret_id
)

// auditIndex is one index: its bucket and the values of a row it holds.
type auditIndex struct {
	bucket []byte
	values func(r *AuditRow) []string
}

// auditIndexes are in order of selectivity, most selective first: a
// query filtering on several ids walks the first one it names and checks
// the others on each row (one sandbox has one user; one user has a few
// sandboxes; a tenant-wide secret may be in every row).
var auditIndexes = [auditIndexCount]auditIndex{
	{bAuditBySandbox, func(r *AuditRow) []string { return one(r.SandboxID) }},
	{bAuditByExtUser, func(r *AuditRow) []string { return one(r.ExternalUserID) }},
	{bAuditBySecret, func(r *AuditRow) []string { return r.secretIDs() }},
	{bAuditByExtWorkspace, func(r *AuditRow) []string { return one(r.ExternalWorkspaceID) }},
}

func auditIndexBuckets() [][]byte {
	out := make([][]byte, len(auditIndexes))
	for i, ix := range auditIndexes {
		out[i] = ix.bucket
	}
	return out
}

func one(v string) []string {
	if v == "" {
		return nil
	}
	return []string{v}
}

// secretIDs are the distinct secrets a row is about: its SecretID and
// those of its Uses.
func (r *AuditRow) secretIDs() []string {
	out := one(r.SecretID)
	for _, u := range r.Uses {
		if u.SecretID != "" && !contains(out, u.SecretID) {
			out = append(out, u.SecretID)
		}
	}
	return out
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// auditTime encodes t as 8 big-endian bytes that sort as the times do
// (nanoseconds since 1970 with the sign bit flipped).
func auditTime(t time.Time) []byte {
	var b [auditTimeLen]byte
	binary.BigEndian.PutUint64(b[:], uint64(t.UnixNano())^(1<<63))
	return b[:]
}

func parseAuditTime(b []byte) time.Time {
	return time.Unix(0, int64(binary.BigEndian.Uint64(b)^(1<<63))).UTC()
}

// auditKey is a row's key in bAudit and, after pre, in an index:
// pre \0 time \0 id, where pre is the tenant, or tenant \0 value.
func auditKey(pre string, tb []byte, id string) []byte {
	k := make([]byte, 0, len(pre)+2+len(tb)+len(id))
	k = append(k, pre...)
	k = append(k, 0)
	k = append(k, tb...)
	k = append(k, 0)
	return append(k, id...)
}

// splitAuditPos reads the time and id after a key's prefix p (which ends
// with its \0).
func splitAuditPos(k, p []byte) (tb []byte, id []byte, ok bool) {
	rest := k[len(p):]
	if len(rest) < auditTimeLen+2 || rest[auditTimeLen] != 0 {
		return nil, nil, false
	}
	return rest[:auditTimeLen], rest[auditTimeLen+1:], true
}

// auditEntry is a row ready to put: its key, its JSON and its index keys,
// built before a commit so the committer only writes; and the same as a
// record for a backend that keeps the audit log itself (rec, whose Data
// is val).
type auditEntry struct {
	key []byte
	val []byte
	idx [auditIndexCount][][]byte
	rec storage.AuditRecord
}

// prepare validates r, fills in ID and Time, drops a query string from
// Path, and encodes the row.
func (r *AuditRow) prepare(now func() time.Time) (auditEntry, error) {
	var e auditEntry
	if r.Kind != AuditKindRequest && r.Kind != AuditKindAdmin {
		return e, invalid("kind", "must be %q or %q", AuditKindRequest, AuditKindAdmin)
	}
	if r.TenantID == "" {
		return e, invalid("tenant_id", "required")
	}
	if r.Time.IsZero() {
		r.Time = now()
	}
	r.Time = r.Time.UTC()
	if y := r.Time.Year(); y < 1970 || y > 2200 {
		return e, invalid("time", "out of range")
	}
	if r.ID == "" {
		r.ID = NewAuditID(r.Time)
	} else if !validAuditID(r.ID) {
		return e, invalid("id", "1 to %d bytes of [A-Za-z0-9_.-]", maxAuditIDLen)
	}
	if i := strings.IndexAny(r.Path, "?#"); i >= 0 {
		r.Path = r.Path[:i]
	}
	r.Path = truncateUTF8(r.Path, maxAuditPath)
	for _, f := range [...]struct{ name, v string }{
		{"tenant_id", r.TenantID}, {"workspace_id", r.WorkspaceID}, {"owner_user_id", r.OwnerUserID},
		{"external_user_id", r.ExternalUserID}, {"external_workspace_id", r.ExternalWorkspaceID},
		{"external_project_id", r.ExternalProjectID}, {"sandbox_id", r.SandboxID}, {"secret_id", r.SecretID},
	} {
		// The ids are parts of keys: no \0, and bounded.
		if len(f.v) > maxAuditField || strings.IndexByte(f.v, 0) >= 0 {
			return e, invalid(f.name, "at most %d bytes, no NUL", maxAuditField)
		}
	}
	for _, u := range r.Uses {
		if len(u.SecretID) > maxAuditField || strings.IndexByte(u.SecretID, 0) >= 0 {
			return e, invalid("uses.secret_id", "at most %d bytes, no NUL", maxAuditField)
		}
	}
	if math.IsNaN(r.DurationMS) || math.IsInf(r.DurationMS, 0) {
		return e, invalid("duration_ms", "must be a finite number")
	}
	val := r.appendJSON(make([]byte, 0, 1024))
	tb := auditTime(r.Time)
	e.key, e.val = auditKey(r.TenantID, tb, r.ID), val
	e.rec = r.record(val)
	for i, ix := range auditIndexes {
		for _, v := range ix.values(r) {
			k := auditKey(r.TenantID+"\x00"+v, tb, r.ID)
			if len(k) > storage.MaxKeySize {
				// Two ids near maxAuditField: refused here, where it fails
				// this caller only, not in the indexer's commit, which would
				// fail every row after it.
				return e, invalid("row", "tenant_id and an id of %d bytes make an index key of %d bytes, over the store's %d", len(v), len(k), storage.MaxKeySize)
			}
			e.idx[i] = append(e.idx[i], k)
		}
	}
	return e, nil
}

// record is r as an audit store keeps it, val its encoding.
func (r *AuditRow) record(val []byte) storage.AuditRecord {
	rec := storage.AuditRecord{
		TenantID: r.TenantID, Time: r.Time, ID: r.ID, Kind: r.Kind, Outcome: r.Outcome,
		ExternalUserID: r.ExternalUserID, ExternalWorkspaceID: r.ExternalWorkspaceID,
		SandboxID: r.SandboxID, SecretID: r.SecretID, Data: val,
	}
	for _, u := range r.Uses {
		if u.SecretID != "" && u.SecretID != r.SecretID && !contains(rec.UseSecretIDs, u.SecretID) {
			rec.UseSecretIDs = append(rec.UseSecretIDs, u.SecretID)
		}
	}
	return rec
}

func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// auditBuckets are the audit log's buckets in one transaction; or, on a
// backend that keeps the audit log itself (storage.AuditTx), that
// transaction alone.
type auditBuckets struct {
	atx  storage.AuditTx
	rows storage.Bucket
	idx  [auditIndexCount]storage.Bucket
}

func txAuditBuckets(tx storage.Tx) auditBuckets {
	if atx, ok := tx.(storage.AuditTx); ok {
		return auditBuckets{atx: atx}
	}
	return kvAuditBuckets(tx)
}

// kvAuditBuckets are the audit buckets of tx, whatever the backend.
func kvAuditBuckets(tx storage.Tx) auditBuckets {
	b := auditBuckets{rows: tx.Bucket(bAudit)}
	// Rows of one tenant are mostly appended in time order: fill pages
	// fuller than bbolt's default half before splitting them (a hint
	// other backends may ignore).
	b.rows.FillHint(0.9)
	for i, ix := range auditIndexes {
		b.idx[i] = tx.Bucket(ix.bucket)
	}
	return b
}

// put writes e. A row written again (same tenant, time and id: the
// proxy's provisional row replaced by its final one) replaces the old one
// and its index entries.
func (b *auditBuckets) put(e *auditEntry) error {
	if b.atx != nil {
		return b.atx.PutAudit([]storage.AuditRecord{e.rec})
	}
	if old := b.rows.Get(e.key); old != nil {
		var r AuditRow
		if err := unmarshal(old, &r); err != nil {
			return err
		}
		if err := b.delete(e.key, &r); err != nil {
			return err
		}
	}
	if err := b.rows.Put(e.key, e.val); err != nil {
		return err
	}
	for i, keys := range e.idx {
		for _, k := range keys {
			if err := b.idx[i].Put(k, nil); err != nil {
				return err
			}
		}
	}
	return nil
}

// delete removes row r (stored at k) and its index entries.
func (b *auditBuckets) delete(k []byte, r *AuditRow) error {
	tb := auditTime(r.Time)
	for i, ix := range auditIndexes {
		for _, v := range ix.values(r) {
			if err := b.idx[i].Delete(auditKey(r.TenantID+"\x00"+v, tb, r.ID)); err != nil {
				return err
			}
		}
	}
	return b.rows.Delete(k)
}
