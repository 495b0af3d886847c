package client

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/egressd/egressd/audit"
	"github.com/egressd/egressd/internal/config"
)

// AuditFilter narrows Audit and AuditAll; empty fields match everything.
type AuditFilter struct {
	// Since (inclusive) and Until (exclusive) bound the rows' time: a
	// duration back from now ("7d", "30d", "12h", "90m") or an RFC 3339
	// time (format a time.Time with time.RFC3339Nano).
	Since, Until string
	// ExternalUserID, ExternalWorkspaceID, SandboxID and SecretID select
	// rows about that id; SecretID also matches a request that used the
	// secret among others. A browser token may set ExternalUserID only to
	// its own user (403 otherwise); its rows are that user's either way.
	ExternalUserID      string
	ExternalWorkspaceID string
	SandboxID           string
	SecretID            string
	// Outcome is a request row's outcome; Kind is "request" or "admin".
	Outcome string
	Kind    string
	// Limit is the most rows of a page, 1 to 1000; zero means the
	// server's default (100).
	Limit int
	// Cursor is the NextCursor of the previous page; empty starts at the
	// newest row.
	Cursor string
}

func (f AuditFilter) query() url.Values {
	q := url.Values{}
	setIf(q, "since", f.Since)
	setIf(q, "until", f.Until)
	setIf(q, "external_user_id", f.ExternalUserID)
	setIf(q, "external_workspace_id", f.ExternalWorkspaceID)
	setIf(q, "sandbox_id", f.SandboxID)
	setIf(q, "secret_id", f.SecretID)
	setIf(q, "outcome", f.Outcome)
	setIf(q, "kind", f.Kind)
	if f.Limit != 0 {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	setIf(q, "cursor", f.Cursor)
	return q
}

// AuditPage is one page of the audit log, newest first. NextCursor is ""
// after the last page; a page may hold fewer rows than the limit (even
// none) while more follow.
type AuditPage struct {
	Rows       []audit.Row `json:"rows"`
	NextCursor string      `json:"next_cursor"`
}

// Audit returns one page of the tenant's audit log (a browser token: of
// its external user's rows).
func (c *Client) Audit(ctx context.Context, f AuditFilter) (AuditPage, error) {
	var out AuditPage
	err := c.do(ctx, http.MethodGet, "/api/v1/audit", f.query(), nil, &out)
	return out, err
}

// errCursorLoop is a server that answered the cursor it was given.
var errCursorLoop = errors.New("client: audit: the server answered the same cursor again")

// AuditAll calls fn with every row that matches f, newest first, following
// the pages' cursors from f.Cursor to the end. It stops at the first error
// of fn or of a page and returns it.
//
// A relative Since or Until ("7d") is turned into a time once, before the
// first page, with this machine's clock, so that every page covers the same
// window (the server would read it against its own clock on each call).
func (c *Client) AuditAll(ctx context.Context, f AuditFilter, fn func(audit.Row) error) error {
	now := time.Now()
	f.Since, f.Until = pinTime(f.Since, now), pinTime(f.Until, now)
	for {
		page, err := c.Audit(ctx, f)
		if err != nil {
			return err
		}
		for _, r := range page.Rows {
			if err := fn(r); err != nil {
				return err
			}
		}
		if page.NextCursor == "" {
			return nil
		}
		if page.NextCursor == f.Cursor {
			return errCursorLoop
		}
		f.Cursor = page.NextCursor
	}
}

// pinTime turns a relative time into RFC 3339 against now; an RFC 3339
// time or an empty one stays as it is, and one that does not parse is left
// for the server to refuse with its own message.
func pinTime(v string, now time.Time) string {
	if s := strings.TrimSpace(v); s == "" {
		return ""
	} else if _, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return v
	}
	t, err := config.ParseSince(v, now)
	if err != nil {
		return v
	}
	return t.UTC().Format(time.RFC3339Nano)
}
