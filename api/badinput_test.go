package api_test

import (
	"context"
	"reflect"
	"strings"
	"testing"

	"github.com/egressd/egressd/client"
	"github.com/egressd/egressd/vault"
)

// TestBadInput sends refused input to every write: each answer is a 4xx
// with a message that says what is wrong, and the store is as it was.
func TestBadInput(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	sbx := must[client.SandboxCreated](t)(h.admin.CreateSandbox(ctx, client.SandboxInput{ExternalUserID: "eu1"}))
	sec := must[client.UpsertResult](t)(h.admin.UpsertSecret(ctx, client.SecretInput{Name: "ok", Value: "v", Scope: vault.ScopeTenant, AllowedHosts: []string{"api.example.com"}})).Secret

	huge := `{"name":"big","scope":"tenant","value":"` + strings.Repeat("a", 1<<20) + `"}`
	secret := func(fields string) string {
		return `{"name":"n","value":"v","scope":"tenant","allowed_hosts":["api.example.com"]` + fields + `}`
	}
	cases := []struct {
		name, method, path, body string
		token                    string // "" means the admin key
		status                   int
		msg                      string
	}{
		{"unknown field", "POST", "/api/v1/egress/secrets", secret(`,"valu":"x"`), "", 400, `unknown field "valu"`},
		{"unknown field listed", "POST", "/api/v1/egress/secrets", secret(`,"Allowed_Host":["x"]`), "", 400, "known: name, value"},
		{"over 1 MiB", "POST", "/api/v1/egress/secrets", huge, "", 413, "exceeds 1048576 bytes"},
		{"over 1 MiB of trailing space", "POST", "/api/v1/egress/secrets", secret("") + strings.Repeat(" ", 1<<20), "", 413, "exceeds"},
		{"trailing data", "POST", "/api/v1/egress/secrets", secret("") + `{}`, "", 400, "trailing data"},
		{"malformed JSON", "POST", "/api/v1/egress/secrets", `{"name":`, "", 400, "truncated JSON"},
		{"syntax error", "POST", "/api/v1/egress/secrets", `{"name" "x"}`, "", 400, "malformed JSON at byte"},
		{"empty body", "POST", "/api/v1/egress/secrets", ``, "", 400, "empty body"},
		{"array body", "POST", "/api/v1/egress/secrets", `[1,2]`, "", 400, "want a JSON object"},
		{"wrong type", "POST", "/api/v1/egress/secrets", `{"name":"n","value":123,"scope":"tenant"}`, "", 400, `field "value": want a string`},
		{"wrong type in map", "POST", "/api/v1/egress/secrets", secret(`,"metadata":{"Key-1":5}`), "", 400, `field "metadata": want a string`},
		{"empty name", "POST", "/api/v1/egress/secrets", `{"name":"","value":"v","scope":"tenant"}`, "", 400, "name: must match [A-Za-z0-9_.-]{1,128}"},
		{"name with space", "POST", "/api/v1/egress/secrets", `{"name":"a b","value":"v","scope":"tenant"}`, "", 400, "name: must match"},
		{"name with slash", "POST", "/api/v1/egress/secrets", `{"name":"a/b","value":"v","scope":"tenant"}`, "", 400, "name: must match"},
		{"name not ASCII", "POST", "/api/v1/egress/secrets", `{"name":"clé","value":"v","scope":"tenant"}`, "", 400, "name: must match"},
		{"name 129 long", "POST", "/api/v1/egress/secrets", `{"name":"` + strings.Repeat("n", 129) + `","value":"v","scope":"tenant"}`, "", 400, "name: must match"},
		{"no value", "POST", "/api/v1/egress/secrets", `{"name":"n","scope":"tenant"}`, "", 400, "value: required"},
		{"value too long", "POST", "/api/v1/egress/secrets", `{"name":"n","scope":"tenant","value":"` + strings.Repeat("v", 64<<10+1) + `"}`, "", 400, "value: at most"},
		{"no scope", "POST", "/api/v1/egress/secrets", `{"name":"n","value":"v"}`, "", 400, "scope: required"},
		{"unknown scope", "POST", "/api/v1/egress/secrets", `{"name":"n","value":"v","scope":"global"}`, "", 400, `scope: unknown scope "global"`},
		{"unknown type", "POST", "/api/v1/egress/secrets", secret(`,"type":"magic"`), "", 400, `type: unknown type "magic"`},
		{"unknown resource_type", "POST", "/api/v1/egress/secrets", secret(`,"resource_id":"` + sbx.ID + `","resource_type":"vm"`), "", 400, `resource_type: unknown resource type "vm"`},
		{"user without owner_user_id", "POST", "/api/v1/egress/secrets", `{"name":"n","value":"v","scope":"user"}`, "", 400, "owner_user_id: required for scope user"},
		{"external_user without id", "POST", "/api/v1/egress/secrets", `{"name":"n","value":"v","scope":"external_user"}`, "", 400, "external_user_id: required for scope external_user"},
		{"external_workspace without id", "POST", "/api/v1/egress/secrets", `{"name":"n","value":"v","scope":"external_workspace"}`, "", 400, "external_workspace_id: required"},
		{"workspace without id", "POST", "/api/v1/egress/secrets", `{"name":"n","value":"v","scope":"workspace"}`, "", 400, "workspace_id: required"},
		{"resource without id", "POST", "/api/v1/egress/secrets", `{"name":"n","value":"v","scope":"resource"}`, "", 400, "resource_id: required"},
		{"bad host", "POST", "/api/v1/egress/secrets", `{"name":"n","value":"v","scope":"tenant","allowed_hosts":["http://x.com/"]}`, "", 400, "allowed_hosts:"},
		// Regression: no hosts was taken as any host.
		{"no allowed_hosts", "POST", "/api/v1/egress/secrets", `{"name":"n","value":"v","scope":"tenant"}`, "", 400, "allowed_hosts: required"},
		{"empty allowed_hosts", "POST", "/api/v1/egress/secrets", `{"name":"n","value":"v","scope":"tenant","allowed_hosts":[]}`, "", 400, "allowed_hosts: required"},
		{"null allowed_hosts", "POST", "/api/v1/egress/secrets", `{"name":"n","value":"v","scope":"tenant","allowed_hosts":null}`, "", 400, "allowed_hosts: required"},
		{"any host while the tenant does not allow it", "POST", "/api/v1/egress/secrets", `{"name":"n","value":"v","scope":"tenant","allowed_hosts":["*"]}`, "", 403, "allowed_hosts: [\"*\"] (any host) needs the tenant setting allow_any_host_secrets"},
		{"wildcard over a public suffix", "POST", "/api/v1/egress/secrets", `{"name":"n","value":"v","scope":"tenant","allowed_hosts":["*.co.uk"]}`, "", 400, "allowed_hosts: \"*.co.uk\" is a wildcard over the public suffix"},
		{"wildcard over a private public suffix", "POST", "/api/v1/egress/secrets", `{"name":"n","value":"v","scope":"tenant","allowed_hosts":["*.github.io"]}`, "", 400, "public suffix \"github.io\""},
		{"bad location", "POST", "/api/v1/egress/secrets", secret(`,"substitute_in":["cookie"]`), "", 400, `substitute_in: unknown location "cookie"`},
		{"bad env name", "POST", "/api/v1/egress/secrets", secret(`,"expose_as_env":"1X"`), "", 400, "expose_as_env:"},
		{"bad expires_at", "POST", "/api/v1/egress/secrets", secret(`,"expires_at":"tomorrow"`), "", 400, "RFC 3339"},
		{"bad placeholder_prefix", "POST", "/api/v1/egress/secrets", secret(`,"placeholder_prefix":"a b"`), "", 400, "placeholder_prefix:"},
		{"upsert on a sandbox as computer", "POST", "/api/v1/egress/secrets", `{"name":"n","value":"v","scope":"resource","resource_id":"` + sbx.ID + `","resource_type":"computer","allowed_hosts":["api.example.com"]}`, "", 400, "resource_type:"},
		{"field twice", "POST", "/api/v1/egress/secrets", secret(`,"scope":"user"`), "", 400, `field "scope" given twice`},
		{"field in another case", "POST", "/api/v1/egress/secrets", secret(`,"Value":"w"`), "", 400, "unknown field (not shown)"},

		{"rotate without value", "POST", "/api/v1/egress/secrets/" + sec.ID + "/rotate", `{}`, "", 400, "value: required"},
		{"rotate unknown field", "POST", "/api/v1/egress/secrets/" + sec.ID + "/rotate", `{"value":"v","version":3}`, "", 400, `unknown field "version"`},
		{"disable with a body", "POST", "/api/v1/egress/secrets/" + sec.ID + "/disable", `{"why":"x"}`, "", 400, `unknown field "why"`},

		{"binding without secret", "POST", "/api/v1/egress/bindings", `{"resource_id":"` + sbx.ID + `"}`, "", 400, "secret_id: required"},
		{"binding unknown resource_type", "POST", "/api/v1/egress/bindings", `{"secret_id":"` + sec.ID + `","resource_id":"` + sbx.ID + `","resource_type":"vm"}`, "", 400, "unknown resource type"},
		{"binding bad env", "POST", "/api/v1/egress/bindings", `{"secret_id":"` + sec.ID + `","resource_id":"` + sbx.ID + `","expose_as_env":"A-B"}`, "", 400, "expose_as_env:"},

		{"sandbox unknown resource_type", "POST", "/api/v1/sandboxes", `{"resource_type":"vm"}`, "", 400, `unknown resource type "vm"`},
		{"sandbox unknown field", "POST", "/api/v1/sandboxes", `{"id":"sbx_mine"}`, "", 400, `unknown field "id"`},
		{"sandbox control char", "POST", "/api/v1/sandboxes", `{"external_user_id":"a\u0000b"}`, "", 400, "external_user_id:"},
		// Regression: bidi overrides and line separators were accepted in ids.
		{"sandbox bidi override", "POST", "/api/v1/sandboxes", `{"external_user_id":"a\u202eb"}`, "", 400, "external_user_id: at most 128 bytes of UTF-8, without control, format"},
		{"sandbox line separator", "POST", "/api/v1/sandboxes", `{"name":"a\u2028b"}`, "", 400, "name:"},
		{"secret bidi isolate", "POST", "/api/v1/egress/secrets", `{"name":"n","value":"v","scope":"workspace","workspace_id":"w\u2067x","allowed_hosts":["api.example.com"]}`, "", 400, "workspace_id:"},
		{"browser token NEL", "POST", "/api/v1/browser_tokens", `{"external_user_id":"eu\u0085"}`, "", 400, "external_user_id:"},
		{"tenant paragraph separator", "POST", "/api/v1/tenants", `{"name":"a\u2029b"}`, "operator", 400, "name:"},
		{"computer as sandbox", "POST", "/api/v1/computers", `{"resource_type":"sandbox"}`, "", 400, "creates computers only"},

		{"settings unknown field", "PATCH", "/api/v1/tenant/settings", `{"allow_end_user_credential":false}`, "", 400, `unknown field "allow_end_user_credential"`},
		{"settings relative path", "PATCH", "/api/v1/tenant/settings", `{"ca_bundle_path":"ca.pem"}`, "", 400, "ca_bundle_path: must be an absolute path"},
		{"settings wrong type", "PATCH", "/api/v1/tenant/settings", `{"allow_end_user_credentials":"no"}`, "", 400, "want a boolean"},
		{"any-host setting wrong type", "PATCH", "/api/v1/tenant/settings", `{"allow_any_host_secrets":1}`, "", 400, "want a boolean"},
		{"browser token bad ttl", "POST", "/api/v1/browser_tokens", `{"external_user_id":"eu1","ttl":"1 day"}`, "", 400, "ttl:"},
		{"browser token ttl too long", "POST", "/api/v1/browser_tokens", `{"external_user_id":"eu1","ttl":"48h"}`, "", 400, "ttl: at most 24h"},
		{"browser token no user", "POST", "/api/v1/browser_tokens", `{}`, "", 400, "external_user_id:"},
		{"tenant unknown field", "POST", "/api/v1/tenants", `{"name":"x","plan":"pro"}`, "operator", 400, `unknown field "plan"`},
		{"tenant empty name", "POST", "/api/v1/tenants", `{"name":"  "}`, "operator", 400, "name:"},

		{"unknown list filter", "GET", "/api/v1/egress/secrets?owner=u1", "", "", 400, `unknown query parameter "owner"`},
		{"unknown scope filter", "GET", "/api/v1/egress/secrets?scope=global", "", "", 400, `scope: unknown scope "global"`},
		{"unknown type filter", "GET", "/api/v1/egress/secrets?type=magic", "", "", 400, "type: unknown type"},
		{"unknown binding filter", "GET", "/api/v1/egress/bindings?sandbox_id=x", "", "", 400, "unknown query parameter"},
		{"unknown resource_type filter", "GET", "/api/v1/sandboxes?resource_type=vm", "", "", 400, "unknown resource type"},
		{"unknown sandbox filter", "GET", "/api/v1/sandboxes?tenant_id=x", "", "", 400, "unknown query parameter"},
		{"query on a get", "GET", "/api/v1/egress/secrets/" + sec.ID + "?fields=value", "", "", 400, "takes no query parameters"},
		{"bad explain name", "GET", "/api/v1/sandboxes/" + sbx.ID + "/explain/a%20b", "", "", 400, "name: must match"},
		{"bad explain host", "GET", "/api/v1/sandboxes/" + sbx.ID + "/explain/n?host=a%2Fb", "", "", 400, "host:"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := h.snapshot(h.tenant.ID)
			token := h.adminKey
			if tc.token == "operator" {
				token = h.operatorKey
			}
			code, body := h.do(tc.method, tc.path, token, strings.NewReader(tc.body))
			checkRefusal(t, code, body, tc.status, tc.msg)
			if after := h.snapshot(h.tenant.ID); !reflect.DeepEqual(before, after) {
				t.Errorf("the store changed:\n%+v\n%+v", before, after)
			}
		})
	}

	// With allow_end_user_credentials off, an external_user secret is 403.
	off := false
	must[vault.Settings](t)(h.admin.UpdateSettings(ctx, vault.SettingsPatch{AllowEndUserCredentials: &off}))
	before := h.snapshot(h.tenant.ID)
	code, body := h.do("POST", "/api/v1/egress/secrets", h.adminKey, strings.NewReader(`{"name":"n","value":"v","scope":"external_user","external_user_id":"eu1","allowed_hosts":["api.example.com"]}`))
	checkRefusal(t, code, body, 403, "allow_end_user_credentials is off")
	if after := h.snapshot(h.tenant.ID); !reflect.DeepEqual(before, after) {
		t.Errorf("the store changed:\n%+v\n%+v", before, after)
	}
	// ... and an existing one cannot be upserted either, but tenant ones can.
	if _, err := h.admin.UpsertSecret(ctx, client.SecretInput{Name: "t", Value: "v", Scope: vault.ScopeTenant, AllowedHosts: []string{"api.example.com"}}); err != nil {
		t.Fatalf("a tenant secret with the setting off: %v", err)
	}
}
