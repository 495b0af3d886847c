package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/egressd/egressd/audit"
	"github.com/egressd/egressd/client"
	"github.com/egressd/egressd/vault"
)

// fakeAudit serves GET /api/v1/audit from pages, keyed by cursor, and
// records every query it was sent.
type fakeAudit struct {
	mu      sync.Mutex
	pages   map[string]client.AuditPage
	queries []url.Values
}

func (f *fakeAudit) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r.Method != "GET" || r.URL.Path != "/api/v1/audit" {
		http.Error(w, "no", 404)
		return
	}
	f.queries = append(f.queries, r.URL.Query())
	p, ok := f.pages[r.URL.Query().Get("cursor")]
	if !ok {
		w.WriteHeader(400)
		w.Write([]byte(`{"error":{"code":"invalid_request","message":"cursor: not a cursor of this log"}}`))
		return
	}
	json.NewEncoder(w).Encode(p)
}

func newFakeAudit(t *testing.T, pages map[string]client.AuditPage) (*fakeAudit, *client.Client) {
	t.Helper()
	f := &fakeAudit{pages: pages}
	hs := httptest.NewServer(f)
	t.Cleanup(hs.Close)
	c, err := client.New(hs.URL, "key")
	if err != nil {
		t.Fatal(err)
	}
	return f, c
}

func row(id string) audit.Row {
	return audit.Row{ID: id, Kind: audit.KindRequest, TenantID: "t"}
}

func TestAuditQuery(t *testing.T) {
	f, c := newFakeAudit(t, map[string]client.AuditPage{"": {Rows: []audit.Row{}}, "cur": {Rows: []audit.Row{}}})
	ctx := context.Background()
	must := func(_ client.AuditPage, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(c.Audit(ctx, client.AuditFilter{}))
	must(c.Audit(ctx, client.AuditFilter{Since: "7d", Until: "2025-01-02T03:04:05Z", ExternalUserID: "eu 1", ExternalWorkspaceID: "ew&1",
		SandboxID: "sb1", SecretID: "sec1", Outcome: "denied", Kind: "request", Limit: 250, Cursor: "cur"}))
	if len(f.queries[0]) != 0 {
		t.Errorf("empty filter sent %v", f.queries[0])
	}
	want := url.Values{"since": {"7d"}, "until": {"2025-01-02T03:04:05Z"}, "external_user_id": {"eu 1"}, "external_workspace_id": {"ew&1"},
		"sandbox_id": {"sb1"}, "secret_id": {"sec1"}, "outcome": {"denied"}, "kind": {"request"}, "limit": {"250"}, "cursor": {"cur"}}
	if got := f.queries[1]; got.Encode() != want.Encode() {
		t.Errorf("query %v, want %v", got, want)
	}
}

// TestAuditAll follows cursors to the end, with relative times pinned
// once so that every page asks for the same window.
func TestAuditAll(t *testing.T) {
	f, c := newFakeAudit(t, map[string]client.AuditPage{
		"":   {Rows: []audit.Row{row("r5"), row("r4")}, NextCursor: "c1"},
		"c1": {Rows: []audit.Row{}, NextCursor: "c2"}, // a scan that hit its bound
		"c2": {Rows: []audit.Row{row("r3"), row("r2")}, NextCursor: "c3"},
		"c3": {Rows: []audit.Row{row("r1")}},
	})
	ctx := context.Background()
	var got []string
	before := time.Now()
	err := c.AuditAll(ctx, client.AuditFilter{Since: "7d", Until: "90m", SandboxID: "sb1", Limit: 2}, func(r audit.Row) error {
		got = append(got, r.ID)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if g := len(got); g != 5 || got[0] != "r5" || got[4] != "r1" {
		t.Fatalf("rows %v", got)
	}
	if len(f.queries) != 4 {
		t.Fatalf("%d pages asked for", len(f.queries))
	}
	since, err := time.Parse(time.RFC3339Nano, f.queries[0].Get("since"))
	if err != nil {
		t.Fatalf("since sent as %q", f.queries[0].Get("since"))
	}
	if lo, hi := before.Add(-7*24*time.Hour-time.Second), time.Now().Add(-7*24*time.Hour+time.Second); since.Before(lo) || since.After(hi) {
		t.Errorf("since pinned to %v", since)
	}
	for i, q := range f.queries {
		if q.Get("since") != f.queries[0].Get("since") || q.Get("until") != f.queries[0].Get("until") || q.Get("sandbox_id") != "sb1" || q.Get("limit") != "2" {
			t.Errorf("page %d asked %v", i, q)
		}
		if want := []string{"", "c1", "c2", "c3"}[i]; q.Get("cursor") != want {
			t.Errorf("page %d cursor %q, want %q", i, q.Get("cursor"), want)
		}
	}

	// An RFC 3339 time, or one the client cannot read, goes as it is.
	f.queries = nil
	c.AuditAll(ctx, client.AuditFilter{Since: "2025-01-02T03:04:05+02:00", Until: "soon"}, func(audit.Row) error { return nil })
	if q := f.queries[0]; q.Get("since") != "2025-01-02T03:04:05+02:00" || q.Get("until") != "soon" {
		t.Errorf("sent %v", q)
	}

	// fn's error stops the walk and comes back.
	f.queries = nil
	stop := errors.New("stop")
	n := 0
	err = c.AuditAll(ctx, client.AuditFilter{}, func(audit.Row) error {
		if n++; n == 2 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || len(f.queries) != 1 {
		t.Errorf("err %v after %d pages", err, len(f.queries))
	}
	// A page's error comes back as *client.Error.
	err = c.AuditAll(ctx, client.AuditFilter{Cursor: "bogus"}, func(audit.Row) error { return nil })
	if client.StatusOf(err) != 400 {
		t.Errorf("bad cursor: %v", err)
	}
}

// TestAuditAllCursorLoop guards against a server that answers the cursor
// it was sent: AuditAll fails instead of asking forever.
func TestAuditAllCursorLoop(t *testing.T) {
	_, c := newFakeAudit(t, map[string]client.AuditPage{"": {NextCursor: "c"}, "c": {NextCursor: "c"}})
	if err := c.AuditAll(context.Background(), client.AuditFilter{}, func(audit.Row) error { return nil }); err == nil {
		t.Fatal("no error")
	}
}

// TestAuditRealAPI runs Audit and AuditAll against the real API: the
// admin writes are there, newest first, and a bad filter is a 400.
func TestAuditRealAPI(t *testing.T) {
	c, _ := realAPI(t)
	ctx := context.Background()
	for i := range 5 {
		if _, err := c.UpsertSecret(ctx, client.SecretInput{Name: "s" + strconv.Itoa(i), Value: "v", Scope: vault.ScopeTenant, AllowedHosts: []string{"api.example.com"}}); err != nil {
			t.Fatal(err)
		}
	}
	var names []string
	if err := c.AuditAll(ctx, client.AuditFilter{Kind: audit.KindAdmin, Since: "1h", Limit: 2}, func(r audit.Row) error {
		if r.Action != vault.ActionSecretCreated || r.ActorKind != vault.ActorAPIKey {
			t.Errorf("row %+v", r)
		}
		names = append(names, r.SecretName)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(names) != 5 || names[0] != "s4" || names[4] != "s0" {
		t.Errorf("rows %v", names)
	}
	for _, f := range []client.AuditFilter{{Since: "7x"}, {Limit: 1001}, {Kind: "other"}, {Cursor: "!"}} {
		if _, err := c.Audit(ctx, f); client.StatusOf(err) != 400 {
			t.Errorf("%+v: %v", f, err)
		}
	}
}
