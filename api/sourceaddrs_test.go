package api_test

import (
	"context"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/egressd/egressd/client"
	"github.com/egressd/egressd/vault"
)

// source_addrs through the API and the Go client: set on create, replaced
// by PATCH, a claim another sandbox holds answers 409 and changes nothing.
func TestSandboxSourceAddrs(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	c := h.admin
	must[vault.Tenant](t)(h.client(h.operatorKey).SetSourcePrefixes(ctx, h.tenant.ID, []string{"10.9.0.0/16", "fd00:9::/48"}))
	a := must[client.SandboxCreated](t)(c.CreateSandbox(ctx, client.SandboxInput{SourceAddrs: []string{"10.9.0.2/32", "::ffff:10.9.1.0/120"}}))
	if want := []string{"10.9.0.2", "10.9.1.0/24"}; !reflect.DeepEqual(a.Sandbox.SourceAddrs, want) {
		t.Fatalf("created with %q, want %q", a.Sandbox.SourceAddrs, want)
	}
	b := must[client.SandboxCreated](t)(c.CreateComputer(ctx, client.SandboxInput{}))
	got := must[vault.Sandbox](t)(c.SetSourceAddrs(ctx, b.ID, []string{"fd00:9::/64"}))
	if !reflect.DeepEqual(got.SourceAddrs, []string{"fd00:9::/64"}) {
		t.Fatalf("updated to %q", got.SourceAddrs)
	}
	if g := must[vault.Sandbox](t)(c.GetSandbox(ctx, b.ID)); !reflect.DeepEqual(g.SourceAddrs, got.SourceAddrs) {
		t.Fatalf("read back %q", g.SourceAddrs)
	}
	before := h.snapshot(h.tenant.ID)
	_, err := c.SetSourceAddrs(ctx, b.ID, []string{"10.9.1.7"})
	mustStatus(t, err, http.StatusConflict)
	if e := apiErr(err); e == nil || !strings.Contains(e.Message, "overlaps 10.9.1.0/24") || !strings.Contains(e.Message, a.ID) {
		t.Errorf("conflict message %v", err)
	}
	_, err = c.CreateSandbox(ctx, client.SandboxInput{SourceAddrs: []string{"10.9.0.2"}})
	mustStatus(t, err, http.StatusConflict)
	// Another tenant cannot claim them either (they are outside its
	// source_prefixes), and learns no id.
	_, _, other := h.newTenant("other")
	_, err = other.CreateSandbox(ctx, client.SandboxInput{SourceAddrs: []string{"10.9.0.0/16"}})
	mustStatus(t, err, http.StatusForbidden)
	if e := apiErr(err); e == nil || strings.Contains(e.Message, a.ID) {
		t.Errorf("another tenant's refusal names the sandbox: %v", err)
	}
	_, err = other.SetSourceAddrs(ctx, b.ID, []string{"10.8.0.1"})
	mustStatus(t, err, http.StatusNotFound)
	for _, body := range []string{`{"source_addrs":["10.0.0.1/8"]}`, `{"source_addrs":["bogus"]}`, `{}`, `{"source_addrs":"10.0.0.1"}`, `{"name":"x"}`} {
		code, resp := h.do("PATCH", "/api/v1/sandboxes/"+b.ID, h.adminKey, strings.NewReader(body))
		if code != http.StatusBadRequest {
			t.Errorf("PATCH %s: %d %s", body, code, resp)
		}
	}
	if code, resp := h.do("PATCH", "/api/v1/computers/"+a.ID, h.adminKey, strings.NewReader(`{"source_addrs":[]}`)); code != http.StatusNotFound {
		t.Errorf("PATCH of a sandbox through /computers: %d %s", code, resp)
	}
	if after := h.snapshot(h.tenant.ID); !reflect.DeepEqual(before, after) {
		t.Errorf("refused writes changed the store")
	}
	got = must[vault.Sandbox](t)(c.SetSourceAddrs(ctx, b.ID, nil))
	if got.SourceAddrs != nil {
		t.Errorf("cleared to %q", got.SourceAddrs)
	}
}
