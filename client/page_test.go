package client_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"

	"github.com/egressd/egressd/client"
	"github.com/egressd/egressd/vault"
)

// fakeLists serves the secrets, bindings, sandboxes and computers lists
// from pages keyed by path and cursor, and records every query.
type fakeLists struct {
	mu      sync.Mutex
	pages   map[string]map[string][]string // path → cursor → ids, with "next" last
	queries map[string][]url.Values
}

func (f *fakeLists) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.queries[r.URL.Path] = append(f.queries[r.URL.Path], r.URL.Query())
	page, ok := f.pages[r.URL.Path][r.URL.Query().Get("cursor")]
	if !ok {
		w.WriteHeader(400)
		w.Write([]byte(`{"error":{"code":"invalid_request","message":"cursor: not a cursor of this list"}}`))
		return
	}
	field := map[string]string{"/api/v1/egress/secrets": "secrets", "/api/v1/egress/bindings": "bindings", "/api/v1/sandboxes": "sandboxes", "/api/v1/computers": "sandboxes"}[r.URL.Path]
	rows := []map[string]string{}
	for _, id := range page[:len(page)-1] {
		rows = append(rows, map[string]string{"id": id})
	}
	json.NewEncoder(w).Encode(map[string]any{field: rows, "next_cursor": page[len(page)-1]})
}

// TestAllFollowsCursors: each All form asks page after page with the same
// filters and limit and the cursor of the page before, calls fn with every
// row in order, and stops at an empty cursor, or with an error at a
// server answering the cursor it was sent.
func TestAllFollowsCursors(t *testing.T) {
	pages := map[string][]string{"": {"a", "b", "c1"}, "c1": {"c2"}, "c2": {"c", ""}}
	f := &fakeLists{pages: map[string]map[string][]string{}, queries: map[string][]url.Values{}}
	for _, p := range []string{"/api/v1/egress/secrets", "/api/v1/egress/bindings", "/api/v1/sandboxes", "/api/v1/computers"} {
		f.pages[p] = pages
	}
	hs := httptest.NewServer(f)
	t.Cleanup(hs.Close)
	c, err := client.New(hs.URL, "key")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var got []string
	add := func(id string) error { got = append(got, id); return nil }
	walks := map[string]func() error{
		"/api/v1/egress/secrets": func() error {
			return c.SecretsAll(ctx, client.SecretFilter{ExternalUserID: "eu1", Limit: 2}, func(s vault.Secret) error { return add(s.ID) })
		},
		"/api/v1/egress/bindings": func() error {
			return c.BindingsAll(ctx, client.BindingFilter{SecretID: "sec_1", Limit: 2}, func(b vault.Binding) error { return add(b.ID) })
		},
		"/api/v1/sandboxes": func() error {
			return c.SandboxesAll(ctx, client.SandboxFilter{ExternalUserID: "eu1", Limit: 2}, func(x vault.Sandbox) error { return add(x.ID) })
		},
		"/api/v1/computers": func() error {
			return c.ComputersAll(ctx, client.SandboxFilter{ExternalUserID: "eu1", Limit: 2}, func(x vault.Sandbox) error { return add(x.ID) })
		},
	}
	for path, walk := range walks {
		got = nil
		if err := walk(); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if len(got) != 3 || got[0] != "a" || got[2] != "c" {
			t.Errorf("%s: rows %v", path, got)
		}
		qs := f.queries[path]
		if len(qs) != 3 {
			t.Fatalf("%s: %d pages asked for", path, len(qs))
		}
		for i, q := range qs {
			if q.Get("limit") != "2" || q.Get("cursor") != []string{"", "c1", "c2"}[i] || len(q) != 2+min(i, 1) {
				t.Errorf("%s: page %d asked %v", path, i, q)
			}
		}
	}
	// A server that answers the cursor it was sent: an error, not a loop.
	f.pages["/api/v1/egress/secrets"] = map[string][]string{"": {"c"}, "c": {"c"}}
	if err := c.SecretsAll(ctx, client.SecretFilter{}, func(vault.Secret) error { return nil }); err == nil {
		t.Fatal("no error on a cursor loop")
	}
	// A refused cursor comes back as the API's error.
	if err := c.SecretsAll(ctx, client.SecretFilter{Cursor: "bogus"}, func(vault.Secret) error { return nil }); client.StatusOf(err) != 400 {
		t.Fatalf("bad cursor: %v", err)
	}
}
