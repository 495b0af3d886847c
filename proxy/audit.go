package proxy

import (
	"context"
	"time"

	"github.com/egressd/egressd/audit"
	"github.com/egressd/egressd/vault"
)

// Action is what happened to one placeholder occurrence.
type Action string

// The actions.
const (
	// ActionSubstituted: the real value went out in its place.
	ActionSubstituted Action = "substituted"
	// ActionDenied: it may not be used there; the request was refused.
	ActionDenied Action = "denied"
	// ActionLeft: it was forwarded as it is (in a body where its secret may
	// not go, unknown, unresolved, or issued to another sandbox).
	ActionLeft Action = "left"
)

// Use is one placeholder occurrence in a request. It never holds a value.
type Use struct {
	Name     string         `json:"name,omitempty"`
	SecretID string         `json:"secret_id,omitempty"`
	Version  int            `json:"version,omitempty"`
	Level    string         `json:"level,omitempty"`
	Location vault.Location `json:"location"`
	Action   Action         `json:"action"`
	Reason   string         `json:"reason,omitempty"`
	// Leak: the placeholder was issued to another sandbox.
	Leak bool `json:"leak,omitempty"`
	// LeakSandboxID is the sandbox the placeholder was issued to, when it is
	// of the same tenant.
	LeakSandboxID string `json:"leak_sandbox_id,omitempty"`
}

// Event is one proxied request that carried a placeholder, or was refused.
// It holds the full identity chain and never a value or a query string.
type Event struct {
	// ID names the request; the records of one request share it.
	ID string `json:"id"`
	// Final is false for the record written before the first value left
	// egressd, true for the one written when the request completed.
	Final               bool          `json:"final"`
	Time                time.Time     `json:"time"`
	TenantID            string        `json:"tenant_id,omitempty"`
	SandboxID           string        `json:"sandbox_id,omitempty"`
	ResourceType        string        `json:"resource_type,omitempty"`
	WorkspaceID         string        `json:"workspace_id,omitempty"`
	OwnerUserID         string        `json:"owner_user_id,omitempty"`
	ExternalUserID      string        `json:"external_user_id,omitempty"`
	ExternalWorkspaceID string        `json:"external_workspace_id,omitempty"`
	ExternalProjectID   string        `json:"external_project_id,omitempty"`
	Host                string        `json:"host"`
	Method              string        `json:"method"`
	Path                string        `json:"path"`
	Status              int           `json:"status"`
	Outcome             Outcome       `json:"outcome"`
	Reason              string        `json:"reason,omitempty"`
	Duration            time.Duration `json:"duration_ns"`
	Uses                []Use         `json:"uses,omitempty"`
	// UsesDropped counts uses beyond the first 100, which are not listed.
	UsesDropped int `json:"uses_dropped,omitempty"`
}

// Sink receives the events. The audit log implements it; Record must not
// keep ev after it returns.
//
// For a request that substitutes a value, Record is called twice with the
// same ID and Time: first (Final false) before the first value leaves
// egressd — the value goes out only if that record was stored; an error
// refuses the request (fail closed) — and again (Final true) when the
// request completes, with its status, duration and every use. With
// Config.AuditAsync the first call is skipped. Refused requests and
// requests whose placeholders were all left alone get only the final call.
type Sink interface {
	Record(ctx context.Context, ev *Event) error
}

// SinkFunc adapts a function to Sink.
type SinkFunc func(ctx context.Context, ev *Event) error

// Record calls f.
func (f SinkFunc) Record(ctx context.Context, ev *Event) error { return f(ctx, ev) }

func stampIdentity(ev *Event, sbx *vault.Sandbox) {
	if sbx == nil {
		return
	}
	ev.TenantID, ev.SandboxID, ev.ResourceType = sbx.TenantID, sbx.ID, string(sbx.ResourceType)
	ev.WorkspaceID, ev.OwnerUserID = sbx.WorkspaceID, sbx.OwnerUserID
	ev.ExternalUserID, ev.ExternalWorkspaceID, ev.ExternalProjectID = sbx.ExternalUserID, sbx.ExternalWorkspaceID, sbx.ExternalProjectID
}

// newEventID returns an id for one request's records that sorts by time.
func newEventID(t time.Time) string { return audit.NewID(t) }
