package api

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/egressd/egressd/audit"
)

// auditExportParams are the query parameters of GET /api/v1/audit/export:
// the list's filters and the format; no limit or cursor, it streams every
// matching row.
var auditExportParams = []string{
	"format", "since", "until", "external_user_id", "external_workspace_id", "sandbox_id",
	"secret_id", "outcome", "kind",
}

// exportPageTime is how long writing one page of an export may take; the
// write deadline moves on with every page, so a long export is not cut by
// the admin listener's write timeout while each page still is bounded.
const exportPageTime = 30 * time.Second

// auditCSVHeader are the columns of the CSV export, in order.
var auditCSVHeader = []string{
	"time", "id", "kind", "tenant_id", "workspace_id", "owner_user_id", "external_user_id",
	"external_workspace_id", "external_project_id", "sandbox_id", "actor_kind", "actor_id", "action",
	"secret_id", "secret_name", "secret_version", "level", "host", "method", "path", "status",
	"outcome", "reason", "duration_ms", "uses", "details",
}

// exportAudit streams every audit row that matches the filters, newest
// first, as JSON lines (format=jsonl, the default) or CSV (format=csv). A
// browser token gets only its own external user's rows, as with the list.
// Relative times are read once, so the export is one fixed window. A
// failure after the first byte aborts the answer (the client sees a broken
// transfer, never a silently short file).
func (s *Server) exportAudit(w http.ResponseWriter, r *http.Request, p *principal) error {
	q := r.URL.Query()
	format := q.Get("format")
	if format == "" {
		format = "jsonl"
	}
	if format != "jsonl" && format != "csv" {
		return errorf(ErrBadRequest, "format: want jsonl or csv")
	}
	f, err := auditFilter(q, s.now())
	if err != nil {
		return err
	}
	if err := ownRows(p, &f); err != nil {
		return err
	}
	f.Limit = audit.MaxLimit
	rows, next, err := s.store.QueryAudit(p.tenant(), f)
	if err != nil {
		return err
	}
	ctype := "application/x-ndjson; charset=utf-8"
	if format == "csv" {
		ctype = "text/csv; charset=utf-8"
	}
	h := w.Header()
	h.Set("Content-Type", ctype)
	h.Set("Content-Disposition", fmt.Sprintf(`attachment; filename="egressd-audit-%s-%s.%s"`,
		safeFileID(p.tenant()), s.now().UTC().Format("20060102T150405Z"), format))
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)

	rc := http.NewResponseController(w)
	enc := newAuditEncoder(format, w)
	n := 0
	for {
		rc.SetWriteDeadline(time.Now().Add(exportPageTime))
		for i := range rows {
			if err := enc.write(&rows[i]); err != nil {
				return nil // the client went away; nothing more to say
			}
		}
		n += len(rows)
		if err := enc.flush(); err != nil {
			return nil
		}
		rc.Flush()
		if next == "" {
			break
		}
		f.Cursor = next
		if rows, next, err = s.store.QueryAudit(p.tenant(), f); err != nil {
			s.log.Error("audit export failed after it began; answer aborted", "tenant_id", p.tenant(), "rows_written", n, "error", err.Error())
			panic(http.ErrAbortHandler)
		}
	}
	return nil
}

// safeFileID keeps an id's [A-Za-z0-9_-] for a file name.
func safeFileID(id string) string {
	return strings.Map(func(r rune) rune {
		if r == '_' || r == '-' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return -1
	}, id)
}

// auditEncoder writes rows in one format.
type auditEncoder struct {
	jsonl *json.Encoder
	csv   *csv.Writer
	buf   bytes.Buffer
	out   io.Writer
}

func newAuditEncoder(format string, w io.Writer) *auditEncoder {
	e := &auditEncoder{out: w}
	if format == "csv" {
		e.csv = csv.NewWriter(w)
		e.csv.Write(auditCSVHeader)
		return e
	}
	e.jsonl = json.NewEncoder(&e.buf)
	e.jsonl.SetEscapeHTML(false)
	return e
}

func (e *auditEncoder) write(r *audit.Row) error {
	if e.csv != nil {
		return e.csv.Write(csvRecord(r))
	}
	if err := e.jsonl.Encode(r); err != nil {
		return err
	}
	if e.buf.Len() < 64<<10 {
		return nil
	}
	return e.flush()
}

func (e *auditEncoder) flush() error {
	if e.csv != nil {
		e.csv.Flush()
		return e.csv.Error()
	}
	_, err := e.out.Write(e.buf.Bytes())
	e.buf.Reset()
	return err
}

// csvRecord is a row's CSV record, every cell made safe for spreadsheets.
func csvRecord(r *audit.Row) []string {
	num := func(n int) string {
		if n == 0 {
			return ""
		}
		return strconv.Itoa(n)
	}
	dur := ""
	if r.DurationMS != 0 {
		dur = strconv.FormatFloat(r.DurationMS, 'f', -1, 64)
	}
	uses := make([]string, 0, len(r.Uses))
	for _, u := range r.Uses {
		parts := []string{u.Name}
		for _, v := range []string{u.Action, u.Location, u.Level, u.Reason, u.SecretID} {
			if v != "" {
				parts = append(parts, v)
			}
		}
		if u.Leak {
			parts = append(parts, "leak")
		}
		uses = append(uses, strings.Join(parts, " "))
	}
	keys := make([]string, 0, len(r.Details))
	for k := range r.Details {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	details := make([]string, 0, len(keys))
	for _, k := range keys {
		details = append(details, k+"="+r.Details[k])
	}
	rec := []string{
		r.Time.UTC().Format(time.RFC3339Nano), r.ID, r.Kind, r.TenantID, r.WorkspaceID, r.OwnerUserID, r.ExternalUserID,
		r.ExternalWorkspaceID, r.ExternalProjectID, r.SandboxID, r.ActorKind, r.ActorID, r.Action,
		r.SecretID, r.SecretName, num(r.SecretVersion), r.Level, r.Host, r.Method, r.Path, num(r.Status),
		r.Outcome, r.Reason, dur, strings.Join(uses, "; "), strings.Join(details, "; "),
	}
	for i, c := range rec {
		rec[i] = csvSafe(c)
	}
	return rec
}

// csvSafe defuses a cell a spreadsheet would read as a formula (CSV
// injection): one starting with = + - @, a tab, a carriage return or a
// line feed, or with = + - @ (or their full-width forms, which some
// spreadsheets take as well) after leading white space, which some
// importers trim, gets a leading single quote.
func csvSafe(c string) string {
	if c == "" {
		return c
	}
	if strings.ContainsRune("=+-@\t\r\n", rune(c[0])) {
		return "'" + c
	}
	first, _ := utf8.DecodeRuneInString(strings.TrimLeftFunc(c, unicode.IsSpace))
	if strings.ContainsRune("=+-@\uff1d\uff0b\uff0d\uff20", first) {
		return "'" + c
	}
	return c
}
