package audit

import (
	"crypto/rand"
	"encoding/base32"
	"time"
)

// Row is one entry of the audit log: a proxied request that carried a
// placeholder (Kind "request"), or an admin write (Kind "admin").
//
// No field may ever hold a secret value, a refresh token, or a query
// string (which may carry one): Path is a URL path only, and Details of an
// admin row hold names and ids, never what a setting or secret was set to.
// Append drops anything after a '?' or '#' in Path as a last guard.
type Row struct {
	// ID is unique and sorts by Time (NewID); Append assigns one
	// when it is empty.
	ID string `json:"id"`
	// Time is when it happened, in UTC; Append uses now when zero.
	Time time.Time `json:"time"`
	// Kind is KindRequest or KindAdmin.
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
	// Action is what an admin row records: one of vault's Action* constants.
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
	Uses []Use `json:"uses,omitempty"`

	// Details add names and ids to an admin row (the settings that
	// changed, the binding an upsert created); never a value.
	Details map[string]string `json:"details,omitempty"`
}

// Use is one placeholder found in a request: which secret it resolved
// to (if any), where, and what the proxy did with it.
type Use struct {
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
	KindRequest = "request"
	KindAdmin   = "admin"
)

const (
	auditIDPrefix   = "aud_"
	maxAuditIDLen   = 64
	maxAuditPath    = 2048 // longer paths are cut (at a rune boundary)
	maxAuditField   = 1024 // an id longer than this is refused
	auditTimeLen    = 8
	auditIndexCount = 4
)

// NewID returns a unique row id that sorts by t: "aud_" and 26
// characters of base32hex over t (8 bytes) and 8 random bytes.
func NewID(t time.Time) string {
	var b [16]byte
	copy(b[:8], auditTime(t))
	rand.Read(b[8:])
	// Encoded in place after the prefix: one allocation (the string), not
	// two (EncodeToString's and the concatenation's).
	var s [len(auditIDPrefix) + 26]byte
	copy(s[:], auditIDPrefix)
	auditIDEncoding.Encode(s[len(auditIDPrefix):], b[:])
	return string(s[:])
}

// auditIDEncoding's alphabet is in ASCII order, so ids sort as their bytes.
var auditIDEncoding = base32.HexEncoding.WithPadding(base32.NoPadding)

// validAuditID accepts 1 to 64 bytes of [A-Za-z0-9_.-]: ids from
// NewID, or a caller's own of that shape.
func validAuditID(id string) bool {
	if id == "" || len(id) > maxAuditIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') && c != '_' && c != '.' && c != '-' {
			return false
		}
	}
	return true
}
