// Package oauth runs OAuth 2.0 connect flows on golang.org/x/oauth2: the
// provider catalogue (built in, and custom ones from the operator's
// providers file), per-tenant white-label overrides, the authorization
// code exchange with PKCE that stores the tokens as one oauth_token secret,
// and the token refresh the proxy asks for before a token expires (one
// refresh per secret at a time). Flows and overrides live in the vault.
package oauth

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"slices"
	"sort"
	"strings"

	"golang.org/x/oauth2"

	"github.com/egressd/egressd/vault"
)

// Provider is an OAuth 2.0 authorization server and the hosts its tokens
// are used on.
type Provider struct {
	// Name is the provider's key ("github").
	Name string `json:"name"`
	// DisplayName is shown on a Connect button.
	DisplayName string `json:"display_name"`
	// AuthURL and TokenURL are the provider's endpoints.
	AuthURL  string `json:"auth_url"`
	TokenURL string `json:"token_url"`
	// Scopes are requested when a connect names none.
	Scopes []string `json:"scopes"`
	// ScopeSeparator joins scopes in the authorize URL; empty means a space.
	ScopeSeparator string `json:"scope_separator,omitempty"`
	// AllowedHosts are where its tokens may be sent: they become the
	// secret's allowed_hosts. Required: host names, IP addresses or
	// "*.domain" (not over a public suffix); never ["*"].
	AllowedHosts []string `json:"allowed_hosts"`
	// Refresh says whether the provider issues refresh tokens.
	Refresh bool `json:"refresh"`
	// PKCE says whether the provider takes a PKCE (S256) challenge.
	PKCE bool `json:"pkce"`
	// AuthParams are added to the authorize URL (access_type=offline).
	AuthParams map[string]string `json:"auth_params,omitempty"`
	// BasicAuth sends the client credentials in an Authorization header to
	// the token endpoint; otherwise in the form.
	BasicAuth bool `json:"basic_auth,omitempty"`
	// PlaceholderPrefix is given to the secrets of this provider.
	PlaceholderPrefix string `json:"placeholder_prefix,omitempty"`
	// Builtin is set for the catalogue's own providers.
	Builtin bool `json:"builtin"`

	// clientID and clientSecret are the operator's default app, from the
	// providers file. The secret is never marshalled.
	clientID     string
	clientSecret vault.Value
}

// ClientID is the operator's default client id; empty if none.
func (p *Provider) ClientID() string { return p.clientID }

func (p *Provider) endpoint() oauth2.Endpoint {
	style := oauth2.AuthStyleInParams
	if p.BasicAuth {
		style = oauth2.AuthStyleInHeader
	}
	return oauth2.Endpoint{AuthURL: p.AuthURL, TokenURL: p.TokenURL, AuthStyle: style}
}

// Builtins is the built-in catalogue. The operator supplies each one's
// client id and secret in the providers file.
func Builtins() []Provider {
	return []Provider{
		{Name: "github", DisplayName: "GitHub", AuthURL: "https://github.com/login/oauth/authorize", TokenURL: "https://github.com/login/oauth/access_token",
			Scopes: []string{"repo", "read:user"}, AllowedHosts: []string{"api.github.com", "github.com", "uploads.github.com", "raw.githubusercontent.com"},
			Refresh: true, PKCE: true, PlaceholderPrefix: "gho_"},
		{Name: "google", DisplayName: "Google", AuthURL: "https://accounts.google.com/o/oauth2/v2/auth", TokenURL: "https://oauth2.googleapis.com/token",
			// googleapis.com is a public suffix (each customer's
			// endpoints live under it): the hosts of the default
			// scopes' APIs, named one by one.
			Scopes: []string{"openid", "email", "profile"}, AllowedHosts: []string{"www.googleapis.com", "openidconnect.googleapis.com", "people.googleapis.com"},
			Refresh: true, PKCE: true, AuthParams: map[string]string{"access_type": "offline", "prompt": "consent"}},
		{Name: "slack", DisplayName: "Slack", AuthURL: "https://slack.com/oauth/v2/authorize", TokenURL: "https://slack.com/api/oauth.v2.access",
			Scopes: []string{"channels:read", "chat:write"}, ScopeSeparator: ",", AllowedHosts: []string{"slack.com", "*.slack.com"},
			Refresh: true, PKCE: false, PlaceholderPrefix: "xoxb-"},
		{Name: "microsoft", DisplayName: "Microsoft", AuthURL: "https://login.microsoftonline.com/common/oauth2/v2.0/authorize", TokenURL: "https://login.microsoftonline.com/common/oauth2/v2.0/token",
			Scopes: []string{"offline_access", "User.Read"}, AllowedHosts: []string{"graph.microsoft.com"},
			Refresh: true, PKCE: true},
		{Name: "gitlab", DisplayName: "GitLab", AuthURL: "https://gitlab.com/oauth/authorize", TokenURL: "https://gitlab.com/oauth/token",
			Scopes: []string{"read_user", "api"}, AllowedHosts: []string{"gitlab.com"},
			Refresh: true, PKCE: true},
		{Name: "linear", DisplayName: "Linear", AuthURL: "https://linear.app/oauth/authorize", TokenURL: "https://api.linear.app/oauth/token",
			Scopes: []string{"read", "write"}, ScopeSeparator: ",", AllowedHosts: []string{"api.linear.app"},
			Refresh: true, PKCE: true},
		{Name: "notion", DisplayName: "Notion", AuthURL: "https://api.notion.com/v1/oauth/authorize", TokenURL: "https://api.notion.com/v1/oauth/token",
			AllowedHosts: []string{"api.notion.com"}, AuthParams: map[string]string{"owner": "user"}, BasicAuth: true,
			Refresh: false, PKCE: false},
	}
}

// fileProvider is one entry of the providers file: a custom provider (all
// fields), or the operator's app for a built-in one (name, client_id,
// client_secret, and any field to change).
type fileProvider struct {
	Provider
	Name         string `json:"name"`
	ClientID     string `json:"client_id"`
	ClientSecret string `json:"client_secret"`
}

// providersFile is the JSON of --oauth-providers.
type providersFile struct {
	Providers []json.RawMessage `json:"providers"`
}

// Catalogue is the set of providers a server knows.
type Catalogue struct {
	byName map[string]*Provider
}

// NewCatalogue is the built-in providers; with a file (may be ""), its
// entries added or merged in.
func NewCatalogue(file string) (*Catalogue, error) {
	c := &Catalogue{byName: map[string]*Provider{}}
	for _, p := range Builtins() {
		if err := checkHosts(&p); err != nil {
			return nil, fmt.Errorf("built-in provider %s: %v", p.Name, err)
		}
		p.Builtin = true
		c.byName[p.Name] = &p
	}
	if file == "" {
		return c, nil
	}
	raw, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadProvidersFile, err)
	}
	var pf providersFile
	if err := json.Unmarshal(raw, &pf); err != nil {
		return nil, fmt.Errorf("%w %s: not JSON of the form {\"providers\": [...]}", ErrBadProvidersFile, file)
	}
	for i, entry := range pf.Providers {
		if err := c.add(entry); err != nil {
			return nil, fmt.Errorf("%w %s: providers[%d]: %v", ErrBadProvidersFile, file, i, err)
		}
	}
	return c, nil
}

func (c *Catalogue) add(raw json.RawMessage) error {
	var fp fileProvider
	if err := json.Unmarshal(raw, &fp); err != nil {
		return fmt.Errorf("malformed entry")
	}
	if !vault.ValidName(fp.Name) {
		return fmt.Errorf("name must match [A-Za-z0-9_.-]{1,128}")
	}
	p, ok := c.byName[fp.Name]
	if ok {
		// The built-in one, with the fields the entry sets.
		merged := *p
		if err := json.Unmarshal(raw, &merged); err != nil {
			return fmt.Errorf("malformed entry")
		}
		merged.Builtin = true
		p = &merged
	} else {
		p = &fp.Provider
		p.Name, p.Builtin = fp.Name, false
	}
	p.clientID = fp.ClientID
	if fp.ClientSecret != "" {
		p.clientSecret = vault.NewValue([]byte(fp.ClientSecret))
	}
	if p.DisplayName == "" {
		p.DisplayName = p.Name
	}
	for _, u := range []struct{ field, v string }{{"auth_url", p.AuthURL}, {"token_url", p.TokenURL}} {
		pu, err := url.Parse(u.v)
		if err != nil || pu.Host == "" || (pu.Scheme != "https" && pu.Scheme != "http") {
			return fmt.Errorf("%s: want an absolute https URL", u.field)
		}
	}
	if err := checkHosts(p); err != nil {
		return err
	}
	c.byName[p.Name] = p
	return nil
}

// checkHosts refuses a provider whose tokens could go to a host nobody
// named: its allowed_hosts, which every secret it stores takes, must name
// hosts as a secret's must, and may not be ["*"] (no tenant setting is
// asked when a provider is loaded).
func checkHosts(p *Provider) error {
	if len(p.AllowedHosts) == 0 {
		return fmt.Errorf("allowed_hosts: required (the hosts its tokens may be sent to)")
	}
	for _, h := range p.AllowedHosts {
		n, err := vault.NormalizeSecretHost(h)
		if err != nil {
			return fmt.Errorf("allowed_hosts: %v", err)
		}
		if n == vault.AnyHost {
			return fmt.Errorf(`allowed_hosts: "*" (any host) is not allowed for a provider: name the hosts its tokens may be sent to`)
		}
	}
	return nil
}

// Get returns the named provider.
func (c *Catalogue) Get(name string) (*Provider, error) {
	if p, ok := c.byName[name]; ok {
		return p, nil
	}
	return nil, fmt.Errorf("%w %q (known: %s)", ErrUnknownProvider, name, strings.Join(c.Names(), ", "))
}

// Names lists the providers, sorted.
func (c *Catalogue) Names() []string {
	names := make([]string, 0, len(c.byName))
	for n := range c.byName {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// List returns the providers, sorted by name.
func (c *Catalogue) List() []Provider {
	out := make([]Provider, 0, len(c.byName))
	for _, n := range c.Names() {
		out = append(out, *c.byName[n])
	}
	return out
}

func joinScopes(p *Provider, scopes []string) string {
	sep := p.ScopeSeparator
	if sep == "" {
		sep = " "
	}
	return strings.Join(slices.Clone(scopes), sep)
}
