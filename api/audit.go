package api

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/egressd/egressd/audit"
	"github.com/egressd/egressd/internal/config"
)

// auditParams are the query parameters of GET /api/v1/audit.
var auditParams = []string{
	"since", "until", "external_user_id", "external_workspace_id", "sandbox_id",
	"secret_id", "outcome", "kind", "limit", "cursor",
}

// AuditPage is the answer of GET /api/v1/audit: rows newest first, and
// the cursor of the next page ("" after the last). A page may hold fewer
// rows than the limit while more follow; only an empty cursor ends.
type AuditPage struct {
	Rows       []audit.Row `json:"rows"`
	NextCursor string      `json:"next_cursor"`
}

// listAudit answers a page of the tenant's audit log. A browser token sees
// only the rows of its own external user: the filter is forced, and asking
// for another user's rows is refused with 403 rather than answered empty,
// so a dashboard that asks for the wrong user finds out.
func (s *Server) listAudit(w http.ResponseWriter, r *http.Request, p *principal) error {
	f, err := auditFilter(r.URL.Query(), s.now())
	if err != nil {
		return err
	}
	if err := ownRows(p, &f); err != nil {
		return err
	}
	rows, next, err := s.store.QueryAudit(p.tenant(), f)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, AuditPage{Rows: rows, NextCursor: next})
	return nil
}

// ownRows narrows f to the rows p may read: a browser token's own
// external user's, the filter forced; naming another user is 403. The
// audit list, export and summary all go through it.
func ownRows(p *principal, f *audit.Filter) error {
	if !p.browser() {
		return nil
	}
	if f.ExternalUserID != "" && f.ExternalUserID != p.externalUser() {
		return errorf(ErrForbidden, "external_user_id: a browser token sees only its own external user's audit rows")
	}
	f.ExternalUserID = p.externalUser()
	return nil
}

// auditFilter reads the query of GET /api/v1/audit. Relative times are
// taken back from now. Its messages name the parameter, never echo it.
func auditFilter(q url.Values, now time.Time) (audit.Filter, error) {
	f := audit.Filter{
		ExternalUserID:      q.Get("external_user_id"),
		ExternalWorkspaceID: q.Get("external_workspace_id"),
		SandboxID:           q.Get("sandbox_id"),
		SecretID:            q.Get("secret_id"),
		Outcome:             q.Get("outcome"),
		Kind:                q.Get("kind"),
		Cursor:              q.Get("cursor"),
	}
	var err error
	if f.Since, err = auditTime("since", q.Get("since"), now); err != nil {
		return f, err
	}
	if f.Until, err = auditTime("until", q.Get("until"), now); err != nil {
		return f, err
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Since.Before(f.Until) {
		return f, errorf(ErrBadRequest, "until: must be after since")
	}
	if f.Kind != "" && f.Kind != audit.KindRequest && f.Kind != audit.KindAdmin {
		return f, errorf(ErrBadRequest, "kind: want %s or %s", audit.KindRequest, audit.KindAdmin)
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > audit.MaxLimit {
			return f, errorf(ErrBadRequest, "limit: want a whole number from 1 to %d (default %d)", audit.MaxLimit, audit.DefaultLimit)
		}
		f.Limit = n
	}
	return f, nil
}

// Audit times before or after these are refused: the log holds none.
var (
	minAuditTime = time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)
	maxAuditTime = time.Date(2201, 1, 1, 0, 0, 0, 0, time.UTC)
)

// auditTime reads since or until: a duration back from now (7d, 30d, 90m,
// 12h) or an RFC 3339 time, the forms of `egressd audit export --since`.
// Empty means unbounded.
func auditTime(name, v string, now time.Time) (time.Time, error) {
	if strings.TrimSpace(v) == "" {
		return time.Time{}, nil
	}
	t, err := config.ParseSince(v, now)
	if err != nil {
		return time.Time{}, errorf(ErrBadRequest, "%s: want a duration back from now such as 7d, 30d, 12h or 90m, or an RFC 3339 time such as 2025-01-02T15:04:05Z", name)
	}
	if t.Before(minAuditTime) || !t.Before(maxAuditTime) {
		return time.Time{}, errorf(ErrBadRequest, "%s: out of range (1970 to 2200)", name)
	}
	return t.UTC(), nil
}
