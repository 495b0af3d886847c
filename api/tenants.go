package api

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/egressd/egressd/vault"
)

// Browser token lifetimes.
const (
	DefaultBrowserTokenTTL = time.Hour
	MaxBrowserTokenTTL     = 24 * time.Hour
)

// TenantInput is the body of POST /api/v1/tenants. SourcePrefixes are
// the addresses the tenant's sandboxes may claim as source_addrs
// (docs/transparent.md); none: they may claim none.
type TenantInput struct {
	Name           string   `json:"name"`
	SourcePrefixes []string `json:"source_prefixes"`
}

// SourcePrefixesInput is the body of PUT
// /api/v1/tenants/{id}/source_prefixes: the tenant's new list ([]
// removes them all).
type SourcePrefixesInput struct {
	SourcePrefixes []string `json:"source_prefixes"`
}

// TenantCreated is the answer of POST /api/v1/tenants. APIKey is the
// tenant's first admin key, shown this once.
type TenantCreated struct {
	Tenant vault.Tenant `json:"tenant"`
	APIKey string       `json:"api_key"`
}

// BrowserTokenInput is the body of POST /api/v1/browser_tokens. TTL is a
// Go duration ("30m", "2h"); empty means DefaultBrowserTokenTTL.
type BrowserTokenInput struct {
	ExternalUserID string `json:"external_user_id"`
	TTL            string `json:"ttl"`
}

// BrowserToken is the answer of POST /api/v1/browser_tokens. Token is
// shown this once.
type BrowserToken struct {
	Token          string     `json:"token"`
	KeyID          string     `json:"key_id"`
	ExternalUserID string     `json:"external_user_id"`
	ExpiresAt      *time.Time `json:"expires_at"`
}

// createTenant makes a tenant and its first admin key (operator key only),
// with the source_prefixes its sandboxes may claim. It goes through the
// operator's writer like every write: the new tenant's log gets its
// tenant.created row.
func (s *Server) createTenant(w http.ResponseWriter, r *http.Request, p *principal) error {
	var in TenantInput
	if err := decode(w, r, &in); err != nil {
		return err
	}
	t, token, err := s.writer(p).CreateTenantWith(vault.NewTenant{Name: in.Name, SourcePrefixes: in.SourcePrefixes})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, TenantCreated{Tenant: t, APIKey: token})
	return nil
}

// createBrowserToken mints a read-only token that sees only one external
// user's sandboxes, secrets' metadata and bindings.
func (s *Server) createBrowserToken(w http.ResponseWriter, r *http.Request, p *principal) error {
	var in BrowserTokenInput
	if err := decode(w, r, &in); err != nil {
		return err
	}
	ttl := DefaultBrowserTokenTTL
	if in.TTL != "" {
		d, err := time.ParseDuration(in.TTL)
		if err != nil || d <= 0 {
			return errorf(ErrBadRequest, "ttl: want a positive Go duration such as 30m or 2h")
		}
		ttl = d
	}
	if ttl > MaxBrowserTokenTTL {
		return errorf(ErrBadRequest, "ttl: at most %s", MaxBrowserTokenTTL)
	}
	token, k, err := s.writer(p).CreateAPIKey(p.tenant(), vault.KeyBrowser, in.ExternalUserID, ttl)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, BrowserToken{Token: token, KeyID: k.ID, ExternalUserID: k.ExternalUserID, ExpiresAt: k.ExpiresAt})
	return nil
}

// setSourcePrefixes replaces a tenant's source_prefixes (operator key
// only) and answers the tenant. Prefixes that overlap another tenant's
// (named: only the operator calls this), or that would leave a claim of
// one of its sandboxes outside them (how many, and which), answer 409 and
// change nothing.
func (s *Server) setSourcePrefixes(w http.ResponseWriter, r *http.Request, p *principal) error {
	var in SourcePrefixesInput
	if err := decode(w, r, &in); err != nil {
		return err
	}
	if in.SourcePrefixes == nil {
		return errorf(ErrBadRequest, "source_prefixes: required (an empty list removes them all)")
	}
	t, err := s.writer(p).SetSourcePrefixes(r.PathValue("id"), in.SourcePrefixes)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, t)
	return nil
}

// getSettings answers the tenant's settings.
func (s *Server) getSettings(w http.ResponseWriter, r *http.Request, p *principal) error {
	t, err := s.store.Tenant(p.tenant())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, t.Settings)
	return nil
}

// patchSettings changes the settings the body names and answers the new
// settings. Turning allow_end_user_credentials off takes effect for the
// very next resolution: the vault drops the tenant's cached results first.
func (s *Server) patchSettings(w http.ResponseWriter, r *http.Request, p *principal) error {
	b, err := readBody(w, r)
	if err != nil {
		return err
	}
	// source_prefixes are shown with the settings, but only the operator
	// sets them: a tenant granting itself addresses is what they prevent.
	var fields map[string]json.RawMessage
	if json.Unmarshal(b, &fields) == nil {
		if _, ok := fields["source_prefixes"]; ok {
			return errorf(ErrForbidden, "source_prefixes: only the operator key sets them (PUT /api/v1/tenants/{id}/source_prefixes); a tenant's keys may read them")
		}
	}
	var in vault.SettingsPatch
	if err := decodeBytes(b, &in); err != nil {
		return err
	}
	st, err := s.writer(p).UpdateSettings(p.tenant(), in)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, st)
	return nil
}
