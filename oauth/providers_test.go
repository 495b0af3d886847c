package oauth

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCatalogueFile(t *testing.T) {
	dir := t.TempDir()
	write := func(s string) string {
		p := filepath.Join(dir, "p.json")
		os.WriteFile(p, []byte(s), 0o600)
		return p
	}
	c, err := NewCatalogue(write(`{"providers":[{"name":"github","client_id":"gh-id","client_secret":"gh-secret-value"},
		{"name":"acme","auth_url":"https://id.acme.test/a","token_url":"https://id.acme.test/t","allowed_hosts":["api.acme.test"]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	gh, _ := c.Get("github")
	if gh.ClientID() != "gh-id" || !gh.Builtin || gh.TokenURL == "" || len(gh.AllowedHosts) == 0 {
		t.Fatalf("%+v", gh)
	}
	b, _ := json.Marshal(c.List())
	if strings.Contains(string(b), "gh-secret-value") {
		t.Fatal("the operator's client secret marshals")
	}
	if a, err := c.Get("acme"); err != nil || a.Builtin || a.DisplayName != "acme" {
		t.Fatalf("%+v %v", a, err)
	}
	if _, err := c.Get("nope"); !errors.Is(err, ErrUnknownProvider) {
		t.Fatal(err)
	}
	for _, bad := range []string{`[`, `{"providers":[{"name":"x","auth_url":"ftp://a","token_url":"https://b","allowed_hosts":["a.test"]}]}`,
		`{"providers":[{"name":"x","auth_url":"https://a","token_url":"https://b"}]}`} {
		if _, err := NewCatalogue(write(bad)); !errors.Is(err, ErrBadProvidersFile) {
			t.Fatalf("%s: %v", bad, err)
		}
	}
	// Regression: a provider's hosts become its secrets' allowed_hosts, so
	// they follow a secret's rules: required, no public-suffix wildcard, and
	// here never any host. A built-in one cannot be emptied either.
	for bad, msg := range map[string]string{
		`{"providers":[{"name":"x","auth_url":"https://a","token_url":"https://b","allowed_hosts":[]}]}`:                          "allowed_hosts: required",
		`{"providers":[{"name":"x","auth_url":"https://a","token_url":"https://b","allowed_hosts":["*"]}]}`:                       `"*" (any host) is not allowed`,
		`{"providers":[{"name":"x","auth_url":"https://a","token_url":"https://b","allowed_hosts":["a.test","*.co.uk"]}]}`:        "public suffix",
		`{"providers":[{"name":"x","auth_url":"https://a","token_url":"https://b","allowed_hosts":["*.appspot.com"]}]}`:           "public suffix",
		`{"providers":[{"name":"github","client_id":"i","client_secret":"s","allowed_hosts":[]}]}`:                                "providers[0]: allowed_hosts: required",
		`{"providers":[{"name":"google","client_id":"i","client_secret":"s","allowed_hosts":["*.googleapis.com"]}]}`:              "public suffix",
		`{"providers":[{"name":"x","auth_url":"https://a","token_url":"https://b","allowed_hosts":["https://api.example.com"]}]}`: "not a host name",
	} {
		_, err := NewCatalogue(write(bad))
		if !errors.Is(err, ErrBadProvidersFile) || !strings.Contains(err.Error(), msg) {
			t.Errorf("%s: %v, want a bad providers file saying %q", bad, err, msg)
		}
	}
	for _, p := range Builtins() {
		if err := checkHosts(&p); err != nil {
			t.Errorf("built-in %s: %v", p.Name, err)
		}
	}
	if len(Builtins()) < 7 {
		t.Fatal("catalogue too small")
	}
}
