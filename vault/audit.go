package vault

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/binary"
	"encoding/json"
	"strings"
	"time"
	"unicode/utf8"

	bolt "go.etcd.io/bbolt"
)

// AuditRow is one entry of the audit log: a proxied request that carried a
// placeholder (Kind "request"), or an admin write (Kind "admin").
//
// No field may ever hold a secret value, a refresh token, or a query
// string (which may carry one): Path is a URL path only, and Details of an
// admin row hold names and ids, never what a setting or secret was set to.
// AppendAudit drops anything after a '?' or '#' in Path as a last guard.
type AuditRow struct {
	// ID is unique and sorts by Time (NewAuditID); AppendAudit assigns one
	// when it is empty.
	ID string `json:"id"`
	// Time is when it happened, in UTC; AppendAudit uses now when zero.
	Time time.Time `json:"time"`
	// Kind is AuditKindRequest or AuditKindAdmin.
	Kind string `json:"kind"`

	// The identity chain. Required: TenantID.
	TenantID            string `json:"tenant_id"`
	WorkspaceID         string `json:"workspace_id,omitempty"`
	OwnerUserID         string `json:"owner_user_id,omitempty"`
	ExternalUserID      string `json:"external_user_id,omitempty"`
	ExternalWorkspaceID string `json:"external_workspace_id,omitempty"`
	ExternalProjectID   string `json:"external_project_id,omitempty"`
	SandboxID           string `json:"sandbox_id,omitempty"`

	// Who acted, for admin rows: one of the Actor* kinds and the id of the
	// API key or browser token (or an operator's / CLI's name).
	ActorKind string `json:"actor_kind,omitempty"`
	ActorID   string `json:"actor_id,omitempty"`
	// Action is what an admin row records: one of the Action* constants.
	Action string `json:"action,omitempty"`

	// The secret the row is about (admin rows), or the first one a request
	// used (request rows; the others are in Uses).
	SecretID      string `json:"secret_id,omitempty"`
	SecretName    string `json:"secret_name,omitempty"`
	SecretVersion int    `json:"secret_version,omitempty"`
	// Level is the resolver level that found the secret.
	Level string `json:"level,omitempty"`

	// The request, for request rows. Path never holds the query string.
	Host       string  `json:"host,omitempty"`
	Method     string  `json:"method,omitempty"`
	Path       string  `json:"path,omitempty"`
	Status     int     `json:"status,omitempty"`
	Outcome    string  `json:"outcome,omitempty"`
	Reason     string  `json:"reason,omitempty"`
	DurationMS float64 `json:"duration_ms,omitempty"`
	// Uses lists every placeholder the request carried.
	Uses []AuditUse `json:"uses,omitempty"`

	// Details add names and ids to an admin row (the settings that
	// changed, the binding an upsert created); never a value.
	Details map[string]string `json:"details,omitempty"`
}

// AuditUse is one placeholder found in a request: which secret it resolved
// to (if any), where, and what the proxy did with it.
type AuditUse struct {
	Name     string `json:"name"`
	SecretID string `json:"secret_id,omitempty"`
	Version  int    `json:"version,omitempty"`
	Level    string `json:"level,omitempty"`
	Location string `json:"location,omitempty"`
	// Action is what the proxy did: substituted, left, denied.
	Action string `json:"action,omitempty"`
	Reason string `json:"reason,omitempty"`
	// Leak is set when the placeholder was issued to another sandbox:
	// LeakSandboxID, when that sandbox is of the same tenant.
	Leak          bool   `json:"leak,omitempty"`
	LeakSandboxID string `json:"leak_sandbox_id,omitempty"`
}

// The kinds of audit rows.
const (
	AuditKindRequest = "request"
	AuditKindAdmin   = "admin"
)

// The actions of admin rows.
const (
	ActionSecretCreated      = "secret.created"
	ActionSecretUpdated      = "secret.updated"
	ActionSecretRotated      = "secret.rotated"
	ActionSecretDisabled     = "secret.disabled"
	ActionSecretEnabled      = "secret.enabled"
	ActionSecretDeleted      = "secret.deleted"
	ActionBindingCreated     = "binding.created"
	ActionBindingDeleted     = "binding.deleted"
	ActionSandboxCreated     = "sandbox.created"
	ActionSandboxDeleted     = "sandbox.deleted"
	ActionSettingsChanged    = "settings.changed"
	ActionBrowserTokenIssued = "browser_token.issued"
	ActionOAuthCompleted     = "oauth.completed"
)

const (
	auditIDPrefix   = "aud_"
	maxAuditIDLen   = 64
	maxAuditPath    = 2048 // longer paths are cut (at a rune boundary)
	maxAuditField   = 1024 // an id longer than this is refused
	auditTimeLen    = 8
	auditIndexCount = 4
)

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

// NewAuditID returns a unique row id that sorts by t: "aud_" and 26
// characters of base32hex over t (8 bytes) and 8 random bytes.
func NewAuditID(t time.Time) string {
	var b [16]byte
	copy(b[:8], auditTime(t))
	rand.Read(b[8:])
	return auditIDPrefix + auditIDEncoding.EncodeToString(b[:])
}

// auditIDEncoding's alphabet is in ASCII order, so ids sort as their bytes.
var auditIDEncoding = base32.HexEncoding.WithPadding(base32.NoPadding)

// validAuditID accepts 1 to 64 bytes of [A-Za-z0-9_.-]: ids from
// NewAuditID, or a caller's own of that shape.
func validAuditID(id string) bool {
	if id == "" || len(id) > maxAuditIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; !isAlnum(c) && c != '_' && c != '.' && c != '-' {
			return false
		}
	}
	return true
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
// built before a commit so the committer only writes.
type auditEntry struct {
	key []byte
	val []byte
	idx [auditIndexCount][][]byte
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
	val, err := json.Marshal(r)
	if err != nil {
		return e, err
	}
	tb := auditTime(r.Time)
	e.key, e.val = auditKey(r.TenantID, tb, r.ID), val
	for i, ix := range auditIndexes {
		for _, v := range ix.values(r) {
			e.idx[i] = append(e.idx[i], auditKey(r.TenantID+"\x00"+v, tb, r.ID))
		}
	}
	return e, nil
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

// auditBuckets are the audit log's buckets in one transaction.
type auditBuckets struct {
	rows *bolt.Bucket
	idx  [auditIndexCount]*bolt.Bucket
}

func txAuditBuckets(tx *bolt.Tx) auditBuckets {
	b := auditBuckets{rows: tx.Bucket(bAudit)}
	// Rows of one tenant are mostly appended in time order: fill pages
	// fuller than bbolt's default half before splitting them.
	b.rows.FillPercent = 0.9
	for i, ix := range auditIndexes {
		b.idx[i] = tx.Bucket(ix.bucket)
	}
	return b
}

// put writes e. A row written again (same tenant, time and id: the
// proxy's provisional row replaced by its final one) replaces the old one
// and its index entries.
func (b *auditBuckets) put(e *auditEntry) error {
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
