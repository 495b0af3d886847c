package vault

import (
	"strings"
	"testing"
)

func TestNormalizeHostPattern(t *testing.T) {
	for _, c := range []struct {
		in, want string
		ok       bool
	}{
		{"api.openai.com", "api.openai.com", true},
		{"  API.OpenAI.com ", "api.openai.com", true},
		{"api.openai.com.", "api.openai.com", true}, // fully qualified form
		{"*.example.com", "*.example.com", true},
		{"*.Example.COM.", "*.example.com", true},
		{"*.co.uk", "*.co.uk", true},
		{"localhost", "localhost", true},
		{"my_host.internal", "my_host.internal", true},
		{"xn--bcher-kva.example", "xn--bcher-kva.example", true},
		{"1.2.3.4", "1.2.3.4", true},
		{"::1", "::1", true},
		{"2001:DB8:0:0::1", "2001:db8::1", true},
		{"::ffff:10.0.0.1", "::ffff:10.0.0.1", true},
		{"", "", false},
		{"   ", "", false},
		{".", "", false},
		{"example.com..", "", false},
		{"*", "", false},
		{"*.", "", false},
		{"*.com", "", false}, // a whole top-level domain
		{"**.example.com", "", false},
		{"a.*.example.com", "", false},
		{"*example.com", "", false},
		{"a..b", "", false},
		{".example.com", "", false},
		{"-a.example.com", "", false},
		{"a-.example.com", "", false},
		{"https://api.openai.com", "", false},
		{"api.openai.com/v1", "", false},
		{"api.openai.com:443", "", false},
		{"user@api.openai.com", "", false},
		{"[::1]", "", false},
		{"fe80::1%eth0", "", false},
		{"exa mple.com", "", false},
		{"bücher.example", "", false},
		{strings.Repeat("a", 64) + ".com", "", false},
		{strings.Repeat("a.", 127) + "com", "", false},
		// Names that read as numbers are IP addresses to a resolver
		// ("1.2.3" is 1.2.0.3), never host names.
		{"1.2.3", "", false},
		{"1234", "", false},
		{"*.0.0.1", "", false},
		{"*.2.3.4", "", false},
	} {
		got, ok := NormalizeHostPattern(c.in)
		if ok != c.ok || got != c.want {
			t.Errorf("NormalizeHostPattern(%q) = %q, %v; want %q, %v", c.in, got, ok, c.want, c.ok)
		}
	}
}

func TestHostAllowed(t *testing.T) {
	norm := func(ps ...string) []string {
		out, err := normalizeHosts("allowed_hosts", ps)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	for _, c := range []struct {
		patterns []string
		host     string
		want     bool
	}{
		// Regression: no patterns meant any host.
		{nil, "anything.example", false},
		{[]string{}, "1.2.3.4", false},
		{[]string{AnyHost}, "anything.example", true},
		{[]string{AnyHost}, "1.2.3.4", true},
		{[]string{AnyHost}, "[::1]", true},
		{[]string{AnyHost}, "", false},
		{norm("api.openai.com"), "api.openai.com", true},
		{norm("api.openai.com"), "API.OpenAI.COM", true},
		{norm("api.openai.com"), "api.openai.com.", true},
		{norm("api.openai.com"), "openai.com", false},
		{norm("api.openai.com"), "x.api.openai.com", false},
		{norm("api.openai.com"), "api.openai.com.evil.com", false},
		{norm("api.openai.com"), "evilapi.openai.com", false},
		{norm("api.openai.com"), "", false},
		{norm("*.example.com"), "a.example.com", true},
		{norm("*.example.com"), "a.b.example.com", true},
		{norm("*.example.com"), "A.Example.Com.", true},
		{norm("*.example.com"), "example.com", false},
		{norm("*.example.com"), ".example.com", false},
		{norm("*.example.com"), "evilexample.com", false},
		{norm("*.example.com"), "example.com.evil.com", false},
		{norm("*.example.com"), "a.example.co", false},
		{norm("api.openai.com", "*.github.com"), "api.github.com", true},
		{norm("api.openai.com", "*.github.com"), "github.com", false},
		{norm("1.2.3.4"), "1.2.3.4", true},
		{norm("1.2.3.4"), "1.2.3.45", false},
		{norm("1.2.3.4"), "01.2.3.4", false},
		{norm("::1"), "::1", true},
		{norm("::1"), "[::1]", true},
		{norm("::1"), "0:0:0:0:0:0:0:1", true},
		{norm("2001:db8::1"), "2001:DB8:0::1", true},
		{norm("2001:db8::1"), "2001:db8::2", false},
		{norm("::ffff:1.2.3.4"), "::ffff:1.2.3.4", true},
		// A wildcard is about names: it never matches an address.
		{norm("*.example.com"), "1.2.3.4", false},
		{norm("*.example.com"), "::1", false},
		{[]string{"*.2.3.4"}, "1.2.3.4", false}, // even a pattern that slipped past NormalizeHostPattern
	} {
		if got := HostAllowed(c.patterns, c.host); got != c.want {
			t.Errorf("HostAllowed(%q, %q) = %v, want %v", c.patterns, c.host, got, c.want)
		}
	}
}

func TestValidName(t *testing.T) {
	for _, ok := range []string{"a", "OPENAI_API_KEY", "openai.key-2", "_", "-", ".", "0", strings.Repeat("x", MaxNameLen)} {
		if !ValidName(ok) {
			t.Errorf("ValidName(%q) = false", ok)
		}
	}
	for _, bad := range []string{"", "a b", "a/b", "a:b", "a\x00b", "ä", "a\n", "$X", strings.Repeat("x", MaxNameLen+1)} {
		if ValidName(bad) {
			t.Errorf("ValidName(%q) = true", bad)
		}
	}
}

func TestValidEnvName(t *testing.T) {
	for _, ok := range []string{"A", "_", "OPENAI_API_KEY", "a1", "_1", strings.Repeat("X", maxEnvNameLen)} {
		if !ValidEnvName(ok) {
			t.Errorf("ValidEnvName(%q) = false", ok)
		}
	}
	for _, bad := range []string{"", "1A", "9", "A-B", "A.B", "A B", "A=B", "É", "A\x00", strings.Repeat("X", maxEnvNameLen+1)} {
		if ValidEnvName(bad) {
			t.Errorf("ValidEnvName(%q) = true", bad)
		}
	}
}

func TestEnvNameFor(t *testing.T) {
	for in, want := range map[string]string{
		"openai":         "OPENAI",
		"openai.api-key": "OPENAI_API_KEY",
		"GH_TOKEN":       "GH_TOKEN",
		"1password":      "_1PASSWORD",
		"...":            "___",
		"a-1":            "A_1",
	} {
		got := EnvNameFor(in)
		if got != want {
			t.Errorf("EnvNameFor(%q) = %q, want %q", in, got, want)
		}
		if !ValidEnvName(got) {
			t.Errorf("EnvNameFor(%q) = %q is not a valid env name", in, got)
		}
	}
	// Every valid secret name maps to a valid env name.
	for _, name := range []string{strings.Repeat("a", MaxNameLen), "9" + strings.Repeat("a", MaxNameLen-1), ".-_"} {
		if got := EnvNameFor(name); !ValidEnvName(got) {
			t.Errorf("EnvNameFor(%.20q...) = %.20q... (%d bytes) is not a valid env name", name, got, len(got))
		}
	}
}

// Regression: ids and names took bidirectional overrides and line
// separators, which make a dashboard, a log line or an audit export read
// something else than what is stored.
func TestIDsRefuseFormatAndSeparators(t *testing.T) {
	bad := map[string]rune{
		"LRE": 0x202a, "RLE": 0x202b, "PDF": 0x202c, "LRO": 0x202d, "RLO": 0x202e,
		"LRI": 0x2066, "RLI": 0x2067, "FSI": 0x2068, "PDI": 0x2069,
		"LRM": 0x200e, "RLM": 0x200f, "ALM": 0x061c,
		"LS": 0x2028, "PS": 0x2029, "NEL": 0x0085, "CSI (C1)": 0x009b,
		"NUL": 0, "LF": '\n', "CR": '\r', "TAB": '\t', "ESC": 0x1b, "DEL": 0x7f,
		"ZWSP": 0x200b, "ZWNJ": 0x200c, "ZWJ": 0x200d, "WJ": 0x2060, "BOM": 0xfeff,
		"soft hyphen": 0x00ad, "tag a": 0xe0061, "interlinear anchor": 0xfff9,
	}
	for _, ok := range []string{"", "user-1", "Zoë", "工作区", "a b", "u@example.com", "x:y/z"} {
		if !validExternalID(ok) {
			t.Errorf("validExternalID(%q) = false", ok)
		}
	}
	s := openTest(t)
	tn := mustTenant(t, s, "acme")
	for name, r := range bad {
		id := "ab" + string(r) + "cd"
		if validExternalID(id) || validText(id) || ValidButtonLabel(id) || validTenantName(id) {
			t.Errorf("%s (U+%04X) accepted", name, r)
		}
		t.Run(name, func(t *testing.T) {
			cases := []refusal{
				{"tenant name", "name", ErrInvalid, func() error { _, _, err := s.CreateTenant(id); return err }},
				{"browser token", "external_user_id", ErrInvalid, func() error { _, _, err := s.CreateAPIKey(tn.ID, KeyBrowser, id, 0); return err }},
				{"override client_id", "client_id", ErrInvalid, func() error {
					_, err := s.PutOAuthOverride(tn.ID, "github", OAuthOverrideInput{ClientID: id, ClientSecret: "s"})
					return err
				}},
				{"override display_name", "display_name", ErrInvalid, func() error {
					_, err := s.PutOAuthOverride(tn.ID, "github", OAuthOverrideInput{ClientID: "c", ClientSecret: "s", DisplayName: id})
					return err
				}},
				{"secret metadata key", "metadata", ErrInvalid, func() error {
					_, err := s.UpsertSecret(tn.ID, SecretInput{Name: "k", Value: "v", Scope: ScopeTenant, AllowedHosts: []string{"a.example"}, Metadata: map[string]string{id: "v"}})
					return err
				}},
			}
			for _, f := range []string{"name", "owner_user_id", "workspace_id", "external_user_id", "external_workspace_id", "external_project_id"} {
				in := SandboxInput{}
				*map[string]*string{"name": &in.Name, "owner_user_id": &in.OwnerUserID, "workspace_id": &in.WorkspaceID, "external_user_id": &in.ExternalUserID,
					"external_workspace_id": &in.ExternalWorkspaceID, "external_project_id": &in.ExternalProjectID}[f] = id
				cases = append(cases, refusal{"sandbox " + f, f, ErrInvalid, func() error { _, _, err := s.CreateSandbox(tn.ID, in); return err }})
			}
			for _, f := range []string{"owner_user_id", "workspace_id", "external_user_id", "external_workspace_id", "resource_id"} {
				in := SecretInput{Name: "k", Value: "v", Scope: ScopeTenant, AllowedHosts: []string{"a.example"}}
				*map[string]*string{"owner_user_id": &in.OwnerUserID, "workspace_id": &in.WorkspaceID, "external_user_id": &in.ExternalUserID,
					"external_workspace_id": &in.ExternalWorkspaceID, "resource_id": &in.ResourceID}[f] = id
				cases = append(cases, refusal{"secret " + f, f, ErrInvalid, func() error { _, err := s.UpsertSecret(tn.ID, in); return err }})
			}
			checkRefusals(t, s, tn.ID, cases)
		})
	}
}
