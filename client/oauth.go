package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/egressd/egressd/vault"
)

// ConnectInput starts an OAuth connect flow: the provider, and what the
// stored secret will be (name, scope and its owner ids, env var, binding).
// Empty fields take defaults: scope from the ids given, expose_as_env
// PROVIDER_TOKEN, name = expose_as_env, scopes the provider's.
type ConnectInput struct {
	Provider            string             `json:"provider"`
	Name                string             `json:"name,omitempty"`
	ExposeAsEnv         string             `json:"expose_as_env,omitempty"`
	Scope               vault.Scope        `json:"scope,omitempty"`
	Scopes              []string           `json:"scopes,omitempty"`
	OwnerUserID         string             `json:"owner_user_id,omitempty"`
	WorkspaceID         string             `json:"workspace_id,omitempty"`
	ExternalUserID      string             `json:"external_user_id,omitempty"`
	ExternalWorkspaceID string             `json:"external_workspace_id,omitempty"`
	ResourceID          string             `json:"resource_id,omitempty"`
	ResourceType        vault.ResourceType `json:"resource_type,omitempty"`
	RedirectURI         string             `json:"redirect_uri,omitempty"`
}

// Connected is a started flow: send the user's browser to AuthorizeURL.
type Connected struct {
	ID           string    `json:"id"`
	AuthorizeURL string    `json:"authorize_url"`
	State        string    `json:"state"`
	Status       string    `json:"status"`
	Provider     string    `json:"provider"`
	ExpiresAt    time.Time `json:"expires_at"`
}

// Flow is an OAuth flow's status, and the secret id once completed.
type Flow = vault.OAuthFlow

// Override is a tenant's white-label app; its client secret is never
// returned (HasClientSecret says whether one is stored).
type Override = vault.OAuthOverride

// OverrideInput sets a white-label app; an empty ClientSecret keeps the
// stored one.
type OverrideInput = vault.OAuthOverrideInput

// ProviderInfo is one provider and the app in force for the tenant
// ("override", "operator" or "none").
type ProviderInfo struct {
	Name         string            `json:"name"`
	DisplayName  string            `json:"display_name"`
	AuthURL      string            `json:"auth_url"`
	TokenURL     string            `json:"token_url"`
	Scopes       []string          `json:"scopes"`
	AllowedHosts []string          `json:"allowed_hosts"`
	Refresh      bool              `json:"refresh"`
	PKCE         bool              `json:"pkce"`
	AuthParams   map[string]string `json:"auth_params,omitempty"`
	Builtin      bool              `json:"builtin"`
	InForce      string            `json:"in_force"`
	Override     *Override         `json:"override,omitempty"`
}

// FlowError is a flow that ended without a token: failed or expired.
type FlowError struct{ Flow Flow }

func (e *FlowError) Error() string {
	return fmt.Sprintf("oauth flow %s %s: %s", e.Flow.ID, e.Flow.Status, e.Flow.Error)
}

// Providers lists the providers and which app is in force for the tenant.
func (c *Client) Providers(ctx context.Context) ([]ProviderInfo, error) {
	var out struct {
		Providers []ProviderInfo `json:"providers"`
	}
	err := c.do(ctx, http.MethodGet, "/api/v1/egress/oauth/providers", nil, nil, &out)
	return out.Providers, err
}

// Connect starts a flow.
func (c *Client) Connect(ctx context.Context, in ConnectInput) (Connected, error) {
	var out Connected
	err := c.do(ctx, http.MethodPost, "/api/v1/egress/oauth/connect", nil, in, &out)
	return out, err
}

// Flow returns a flow's status; with wait > 0 the server holds the answer
// until the flow leaves pending or wait passes (it caps wait at 50 s).
func (c *Client) Flow(ctx context.Context, id string, wait time.Duration) (Flow, error) {
	var q url.Values
	if wait > 0 {
		q = url.Values{"wait": {wait.String()}}
	}
	var out Flow
	err := c.do(ctx, http.MethodGet, "/api/v1/egress/oauth/flows/"+seg(id), q, nil, &out)
	return out, err
}

// WaitForCompletion long-polls the flow until it completes (the flow is
// returned), fails or expires (a *FlowError), or timeout (zero: until ctx
// ends) passes.
func (c *Client) WaitForCompletion(ctx context.Context, id string, timeout time.Duration) (Flow, error) {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	for {
		wait := 25 * time.Second // under the client's own 30 s timeout
		if dl, ok := ctx.Deadline(); ok {
			wait = min(wait, time.Until(dl))
		}
		if wait <= 0 {
			return Flow{}, context.DeadlineExceeded
		}
		f, err := c.Flow(ctx, id, wait)
		if err != nil {
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return f, context.DeadlineExceeded
			}
			return f, err
		}
		switch f.Status {
		case vault.FlowCompleted:
			return f, nil
		case vault.FlowFailed, vault.FlowExpired:
			return f, &FlowError{Flow: f}
		}
		if err := ctx.Err(); err != nil {
			return f, err
		}
	}
}

// EndUser is the end-user a tenant's session belongs to, asserted when
// the tenant forwards a callback: ExternalUserID for a flow attributed to
// an external user, OwnerUserID for a user-scoped flow.
type EndUser struct {
	ExternalUserID string `json:"external_user_id,omitempty"`
	OwnerUserID    string `json:"owner_user_id,omitempty"`
}

// Complete forwards the code and state the provider sent to the tenant's
// own callback, in the session of user: it must be the flow's end-user,
// else the server answers 403 and the flow stays pending.
func (c *Client) Complete(ctx context.Context, user EndUser, code, state string) (Flow, error) {
	var out Flow
	body := struct {
		EndUser
		Code  string `json:"code"`
		State string `json:"state"`
	}{user, code, state}
	err := c.do(ctx, http.MethodPost, "/api/v1/egress/oauth/complete", nil, body, &out)
	return out, err
}

// PutOverride sets the tenant's white-label app for provider.
func (c *Client) PutOverride(ctx context.Context, provider string, in OverrideInput) (Override, error) {
	var out Override
	err := c.do(ctx, http.MethodPut, "/api/v1/egress/oauth/overrides/"+seg(provider), nil, in, &out)
	return out, err
}

// GetOverride returns the tenant's white-label app for provider.
func (c *Client) GetOverride(ctx context.Context, provider string) (Override, error) {
	var out Override
	err := c.do(ctx, http.MethodGet, "/api/v1/egress/oauth/overrides/"+seg(provider), nil, nil, &out)
	return out, err
}

// DeleteOverride removes the tenant's white-label app for provider.
func (c *Client) DeleteOverride(ctx context.Context, provider string) error {
	return c.do(ctx, http.MethodDelete, "/api/v1/egress/oauth/overrides/"+seg(provider), nil, nil, nil)
}
