package api

import (
	"net/http"
	"time"

	"github.com/egressd/egressd/vault"
)

// Browser token lifetimes.
const (
	DefaultBrowserTokenTTL = time.Hour
	MaxBrowserTokenTTL     = 24 * time.Hour
)

// TenantInput is the body of POST /api/v1/tenants.
type TenantInput struct {
	Name string `json:"name"`
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

// createTenant makes a tenant and its first admin key (operator key only).
// It goes through the operator's writer like every write, though the vault
// records no audit row for tenant creation (the list is in vault.Store.As).
func (s *Server) createTenant(w http.ResponseWriter, r *http.Request, p *principal) error {
	var in TenantInput
	if err := decode(w, r, &in); err != nil {
		return err
	}
	t, token, err := s.writer(p).CreateTenant(in.Name)
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
	var in vault.SettingsPatch
	if err := decode(w, r, &in); err != nil {
		return err
	}
	st, err := s.writer(p).UpdateSettings(p.tenant(), in)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, st)
	return nil
}
