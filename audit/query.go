package audit

import (
	"bytes"
	"encoding/base64"
	"strings"
	"time"

	"github.com/egressd/egressd/vault/storage"
)

// Filter narrows Query; empty fields match everything.
type Filter struct {
	// Since (inclusive) and Until (exclusive) bound the rows' Time; zero
	// means unbounded.
	Since, Until time.Time
	// ExternalUserID, ExternalWorkspaceID, SandboxID and SecretID each
	// have an index; SecretID also matches a request that used the
	// secret in any of its Uses.
	ExternalUserID      string
	ExternalWorkspaceID string
	SandboxID           string
	SecretID            string
	// Outcome and Kind are checked on each row the scan reads.
	Outcome string
	Kind    string
	// Limit is the most rows of a page: zero means DefaultLimit; at
	// most MaxLimit.
	Limit int
	// Cursor is the nextCursor of the previous page; empty starts at the
	// newest row.
	Cursor string
}

// Limits of Query.
const (
	DefaultLimit = 100
	MaxLimit     = 1000
)

// auditScanRows bounds the index entries or rows one Query reads,
// so a filter that matches few rows of a long stretch of the log does not
// hold a read transaction over all of it: the page then ends early, with
// a cursor to go on from.
const auditScanRows = 20000

// cursorVersion is the first byte of a cursor.
const cursorVersion = 1

// Query returns a page of the tenant's audit rows that match f,
// newest first, and the cursor of the next page ("" after the last).
//
// Pages are exact: following the cursors returns every matching row once,
// in order, however many rows share a timestamp. A cursor is a position
// in the log (a row's time and id), valid with any filter. A page may
// hold fewer than Limit rows while more follow, when its scan reached
// its bound (auditScanRows entries read); only an empty cursor means the
// end.
//
// The scan walks the index of the most selective id filter set (sandbox,
// external user, secret, external workspace, in that order), or the
// tenant's rows when none is, and checks the other filters on each row.
func (l *Log) Query(tenantID string, f Filter) (rows []Row, nextCursor string, err error) {
	return l.queryAudit(tenantID, f, auditScanRows, allAuditFields)
}

// queryAudit is Query reading at most budget entries, its rows with
// the fields of need (decodeAuditRowFields) and those f matches on.
func (l *Log) queryAudit(tenantID string, f Filter, budget int, need uint64) ([]Row, string, error) {
	need |= f.fields()
	if err := f.check(tenantID); err != nil {
		return nil, "", err
	}
	if f.Cursor == "" {
		// Rows still on their way from the journal first; a later page
		// holds only older rows.
		if err := l.Sync(); err != nil {
			return nil, "", err
		}
	}
	if f.Limit == 0 {
		f.Limit = DefaultLimit
	}
	// The upper bound (exclusive) of the scan, as a key suffix: the
	// cursor's position, or Until.
	var upper []byte
	if f.Cursor != "" {
		tb, id, err := parseCursor(f.Cursor)
		if err != nil {
			return nil, "", err
		}
		if l.as != nil {
			return l.queryAuditStore(tenantID, f, storage.AuditPos{Time: parseAuditTime(tb), ID: string(id)}, budget, need)
		}
		upper = auditPos(tb, string(id))
	} else if l.as != nil {
		return l.queryAuditStore(tenantID, f, storage.AuditPos{}, budget, need)
	}
	if !f.Until.IsZero() {
		if u := auditTime(f.Until); upper == nil || bytes.Compare(u, upper) < 0 {
			upper = u
		}
	}
	var lower []byte // inclusive
	if !f.Since.IsZero() {
		lower = auditTime(f.Since)
	}

	bucket, viaIndex := bAudit, false
	p := append([]byte(tenantID), 0)
	for i, ix := range auditIndexes {
		if v := f.indexed(i); v != "" {
			bucket, p, viaIndex = ix.bucket, auditIndexPrefix(tenantID, v), true
			break
		}
	}

	out := []Row{}
	var next string
	err := l.db.View(func(tx storage.Tx) error {
		rowsB := tx.Bucket(bAudit)
		// next gives the positions below upper, newest first, and the
		// row's value when the walk is over the rows themselves.
		var nextPos func() (pos, v []byte)
		var it *postingIter
		if viaIndex {
			it = newPostingIter(tx.Bucket(bucket), p, upper)
			nextPos = func() ([]byte, []byte) { return it.next(), nil }
		} else {
			c := rowsB.Cursor()
			var k, v []byte
			if upper == nil {
				k, v = seekBefore(c, prefixEnd(p))
			} else {
				k, v = seekBefore(c, append(bytes.Clone(p), upper...))
			}
			nextPos = func() ([]byte, []byte) {
				for ; k != nil && bytes.HasPrefix(k, p); k, v = c.Prev() {
					if _, _, ok := splitPos(k, len(p)); ok {
						pos, val := k[len(p):], v
						k, v = c.Prev()
						return pos, val
					}
				}
				return nil, nil
			}
		}
		// The positions of the last entry read and of the last row kept.
		var readPos, keptPos []byte
		rowKey := append(make([]byte, 0, 64), tenantID...)
		rowKey = append(rowKey, 0)
		pre := len(rowKey)
		for read := 0; ; {
			pos, v := nextPos()
			if pos == nil {
				break
			}
			if lower != nil && bytes.Compare(pos[:auditTimeLen], lower) < 0 {
				return nil
			}
			if read == budget {
				// Read enough: the next page goes on below the last
				// entry read.
				next = cursorAt(readPos)
				return nil
			}
			read++
			readPos = pos
			rowKey = append(rowKey[:pre], pos...)
			if viaIndex {
				if v = rowsB.Get(rowKey); v == nil {
					continue
				}
			}
			var r Row
			if err := decodeAuditRowFields(v, rowKey, &r, need); err != nil {
				return err
			}
			if !f.match(&r) {
				continue
			}
			if len(out) == f.Limit {
				// One more row matches: the page ends at the last one kept.
				next = cursorAt(keptPos)
				return nil
			}
			out = append(out, r)
			keptPos = pos
		}
		if it != nil {
			return it.err
		}
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	return out, next, nil
}

// prefixEnd is the first key past every key that starts with p (p with
// its last byte below 0xff raised by one), or nil when there is none.
func prefixEnd(p []byte) []byte {
	end := bytes.Clone(p)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

// cursorAt is the cursor of a position (as keys end).
func cursorAt(pos []byte) string {
	tb := pos[:auditTimeLen]
	id, _ := auditIDOfSuffix(tb, pos[auditTimeLen:])
	return encodeCursor(tb, []byte(id))
}

// seekBefore moves c to the last key below k.
func seekBefore(c storage.Cursor, k []byte) ([]byte, []byte) {
	if k == nil {
		return c.Last()
	}
	if at, _ := c.Seek(k); at == nil {
		return c.Last()
	}
	return c.Prev()
}

func (f *Filter) check(tenantID string) error {
	if tenantID == "" {
		return invalid("tenant_id", "required")
	}
	if f.Limit < 0 || f.Limit > MaxLimit {
		return invalid("limit", "1 to %d", MaxLimit)
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Since.Before(f.Until) {
		return invalid("until", "must be after since")
	}
	for _, b := range []struct {
		field string
		t     time.Time
	}{{"since", f.Since}, {"until", f.Until}} {
		if y := b.t.Year(); !b.t.IsZero() && (y < 1970 || y > 2200) {
			return invalid(b.field, "out of range")
		}
	}
	if f.Kind != "" && f.Kind != KindRequest && f.Kind != KindAdmin {
		return invalid("kind", "must be %q or %q", KindRequest, KindAdmin)
	}
	for field, v := range map[string]string{"external_user_id": f.ExternalUserID, "external_workspace_id": f.ExternalWorkspaceID, "sandbox_id": f.SandboxID, "secret_id": f.SecretID, "outcome": f.Outcome} {
		if len(v) > maxAuditField || strings.IndexByte(v, 0) >= 0 {
			return invalid(field, "at most %d bytes, no NUL", maxAuditField)
		}
	}
	return nil
}

// indexed is the filter's value for auditIndexes[i].
func (f *Filter) indexed(i int) string {
	switch string(auditIndexes[i].bucket) {
	case string(bAuditBySandbox):
		return f.SandboxID
	case string(bAuditByExtUser):
		return f.ExternalUserID
	case string(bAuditBySecret):
		return f.SecretID
	case string(bAuditByExtWorkspace):
		return f.ExternalWorkspaceID
	}
	return ""
}

// fields are the fields of a row match reads (binField bits).
func (f *Filter) fields() uint64 {
	var m uint64
	add := func(bit int, on bool) {
		if on {
			m |= 1 << bit
		}
	}
	add(binExternalUserID, f.ExternalUserID != "")
	add(binExternalWorkspaceID, f.ExternalWorkspaceID != "")
	add(binSandboxID, f.SandboxID != "")
	add(binOutcome, f.Outcome != "")
	add(binKind, f.Kind != "")
	if f.SecretID != "" {
		m |= 1<<binSecretID | 1<<binSecretName | 1<<binUses // secretIDs
	}
	return m
}

func (f *Filter) match(r *Row) bool {
	return (f.ExternalUserID == "" || r.ExternalUserID == f.ExternalUserID) &&
		(f.ExternalWorkspaceID == "" || r.ExternalWorkspaceID == f.ExternalWorkspaceID) &&
		(f.SandboxID == "" || r.SandboxID == f.SandboxID) &&
		(f.SecretID == "" || contains(r.secretIDs(), f.SecretID)) &&
		(f.Outcome == "" || r.Outcome == f.Outcome) &&
		(f.Kind == "" || r.Kind == f.Kind) &&
		(f.Since.IsZero() || !r.Time.Before(f.Since)) &&
		(f.Until.IsZero() || r.Time.Before(f.Until))
}

// encodeCursor makes the opaque cursor of position (tb, id): a version
// byte, the time's 8 bytes and the id, in unpadded base64url.
func encodeCursor(tb, id []byte) string {
	b := make([]byte, 0, 1+len(tb)+len(id))
	b = append(b, cursorVersion)
	b = append(b, tb...)
	return base64.RawURLEncoding.EncodeToString(append(b, id...))
}

func parseCursor(c string) (tb, id []byte, err error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil || len(b) < 1+auditTimeLen+1 || b[0] != cursorVersion || !validAuditID(string(b[1+auditTimeLen:])) {
		return nil, nil, invalid("cursor", "not a cursor of this log")
	}
	return b[1 : 1+auditTimeLen], b[1+auditTimeLen:], nil
}
