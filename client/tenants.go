package client

import (
	"context"
	"net/http"
	"time"

	"github.com/egressd/egressd/vault"
)

// TenantCreated is a new tenant and its first admin API key, shown once.
type TenantCreated struct {
	Tenant vault.Tenant `json:"tenant"`
	APIKey string       `json:"api_key"`
}

// BrowserToken is a read-only token scoped to one external user, shown once.
type BrowserToken struct {
	Token          string     `json:"token"`
	KeyID          string     `json:"key_id"`
	ExternalUserID string     `json:"external_user_id"`
	ExpiresAt      *time.Time `json:"expires_at"`
}

// CreateTenant creates a tenant and its first admin key. Only the
// operator key may call it.
func (c *Client) CreateTenant(ctx context.Context, name string) (TenantCreated, error) {
	var out TenantCreated
	err := c.do(ctx, http.MethodPost, "/api/v1/tenants", nil, struct {
		Name string `json:"name"`
	}{name}, &out)
	return out, err
}

// TenantInput is what a tenant is created with (CreateTenantWith).
type TenantInput struct {
	Name string `json:"name"`
	// SourcePrefixes are the addresses the tenant's sandboxes may claim
	// as source_addrs for the transparent listener; none: they may claim
	// none.
	SourcePrefixes []string `json:"source_prefixes,omitempty"`
}

// CreateTenantWith is CreateTenant with the tenant's source_prefixes.
// Only the operator key may call it; prefixes that overlap another
// tenant's answer 409.
func (c *Client) CreateTenantWith(ctx context.Context, in TenantInput) (TenantCreated, error) {
	var out TenantCreated
	err := c.do(ctx, http.MethodPost, "/api/v1/tenants", nil, in, &out)
	return out, err
}

// SetSourcePrefixes replaces a tenant's source_prefixes (nil or empty
// removes them all) and returns the tenant. Only the operator key may
// call it. Prefixes that overlap another tenant's, or that would leave a
// source_addrs claim of one of the tenant's sandboxes outside them, answer
// 409 and change nothing.
func (c *Client) SetSourcePrefixes(ctx context.Context, tenantID string, prefixes []string) (vault.Tenant, error) {
	if prefixes == nil {
		prefixes = []string{}
	}
	var out vault.Tenant
	err := c.do(ctx, http.MethodPut, "/api/v1/tenants/"+seg(tenantID)+"/source_prefixes", nil, struct {
		SourcePrefixes []string `json:"source_prefixes"`
	}{prefixes}, &out)
	return out, err
}

// GetSettings returns the tenant's settings, source_prefixes among them.
func (c *Client) GetSettings(ctx context.Context) (vault.Settings, error) {
	var out vault.Settings
	err := c.do(ctx, http.MethodGet, "/api/v1/tenant/settings", nil, nil, &out)
	return out, err
}

// UpdateSettings changes the settings p names and returns the new ones.
func (c *Client) UpdateSettings(ctx context.Context, p vault.SettingsPatch) (vault.Settings, error) {
	var out vault.Settings
	err := c.do(ctx, http.MethodPatch, "/api/v1/tenant/settings", nil, p, &out)
	return out, err
}

// CreateBrowserToken mints a read-only token that sees only one external
// user's resources. ttl zero means the server's default (1h); at most 24h.
func (c *Client) CreateBrowserToken(ctx context.Context, externalUserID string, ttl time.Duration) (BrowserToken, error) {
	in := struct {
		ExternalUserID string `json:"external_user_id"`
		TTL            string `json:"ttl,omitempty"`
	}{ExternalUserID: externalUserID}
	if ttl != 0 {
		in.TTL = ttl.String()
	}
	var out BrowserToken
	err := c.do(ctx, http.MethodPost, "/api/v1/browser_tokens", nil, in, &out)
	return out, err
}
