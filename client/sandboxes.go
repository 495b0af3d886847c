package client

import (
	"context"
	"net/http"
	"net/url"

	"github.com/egressd/egressd/resolver"
	"github.com/egressd/egressd/vault"
)

// SandboxInput registers a sandbox or computer with its attribution.
type SandboxInput = vault.SandboxInput

// Attribution is who a sandbox works for, stamped at creation.
type Attribution struct {
	OwnerUserID         string `json:"owner_user_id,omitempty"`
	WorkspaceID         string `json:"workspace_id,omitempty"`
	ExternalUserID      string `json:"external_user_id,omitempty"`
	ExternalWorkspaceID string `json:"external_workspace_id,omitempty"`
	ExternalProjectID   string `json:"external_project_id,omitempty"`
}

// SandboxCreated is what creating a sandbox returns. ProxyToken (and
// ProxyURL and the proxy variables in Env, which carry it) are shown only
// this once.
type SandboxCreated struct {
	ID           string              `json:"id"`
	ResourceType vault.ResourceType  `json:"resource_type"`
	Attribution  Attribution         `json:"attribution"`
	Sandbox      vault.Sandbox       `json:"sandbox"`
	ProxyToken   string              `json:"proxy_token"`
	ProxyURL     string              `json:"proxy_url"`
	CACertPEM    string              `json:"ca_cert_pem"`
	CABundlePath string              `json:"ca_bundle_path"`
	Env          map[string]string   `json:"env"`
	Placeholders []resolver.EnvEntry `json:"placeholders"`
}

// SandboxEnv is a sandbox's env as of now. The proxy token is not in it:
// ProxyURL and the proxy variables carry "<proxy-token>" in its place.
type SandboxEnv struct {
	SandboxID         string              `json:"sandbox_id"`
	ResourceType      vault.ResourceType  `json:"resource_type"`
	Env               map[string]string   `json:"env"`
	Placeholders      []resolver.EnvEntry `json:"placeholders"`
	ProxyURL          string              `json:"proxy_url"`
	ProxyTokenOmitted bool                `json:"proxy_token_omitted"`
	Note              string              `json:"note,omitempty"`
	CACertPEM         string              `json:"ca_cert_pem"`
	CABundlePath      string              `json:"ca_bundle_path"`
}

// SandboxFilter narrows ListSandboxes, ListComputers and their All forms;
// empty fields match everything.
type SandboxFilter struct {
	ResourceType        vault.ResourceType
	OwnerUserID         string
	WorkspaceID         string
	ExternalUserID      string
	ExternalWorkspaceID string
	ExternalProjectID   string
	// Limit is the most sandboxes of a page, 1 to 1000; zero means the
	// server's default (100).
	Limit int
	// Cursor is the NextCursor of the previous page, from the same list
	// with the same filters; empty starts at the first sandbox.
	Cursor string
}

// SandboxPage is one page of sandboxes and computers, in id order.
// NextCursor is "" after the last page.
type SandboxPage struct {
	Sandboxes  []vault.Sandbox `json:"sandboxes"`
	NextCursor string          `json:"next_cursor"`
}

func (f SandboxFilter) query() url.Values {
	q := url.Values{}
	setIf(q, "resource_type", string(f.ResourceType))
	setIf(q, "owner_user_id", f.OwnerUserID)
	setIf(q, "workspace_id", f.WorkspaceID)
	setIf(q, "external_user_id", f.ExternalUserID)
	setIf(q, "external_workspace_id", f.ExternalWorkspaceID)
	setIf(q, "external_project_id", f.ExternalProjectID)
	setPage(q, f.Limit, f.Cursor)
	return q
}

// CreateSandbox registers a sandbox (or, with resource_type computer, a
// computer).
func (c *Client) CreateSandbox(ctx context.Context, in SandboxInput) (SandboxCreated, error) {
	var out SandboxCreated
	err := c.do(ctx, http.MethodPost, "/api/v1/sandboxes", nil, in, &out)
	return out, err
}

// CreateComputer registers a computer through /api/v1/computers.
func (c *Client) CreateComputer(ctx context.Context, in SandboxInput) (SandboxCreated, error) {
	var out SandboxCreated
	err := c.do(ctx, http.MethodPost, "/api/v1/computers", nil, in, &out)
	return out, err
}

// ListSandboxes returns one page of sandboxes and computers (a browser
// token: of its external user's).
func (c *Client) ListSandboxes(ctx context.Context, f SandboxFilter) (SandboxPage, error) {
	return c.listResources(ctx, "/api/v1/sandboxes", f)
}

// ListComputers returns one page of computers only.
func (c *Client) ListComputers(ctx context.Context, f SandboxFilter) (SandboxPage, error) {
	return c.listResources(ctx, "/api/v1/computers", f)
}

// SandboxesAll calls fn with every sandbox and computer that matches f, in
// id order, following the pages' cursors from f.Cursor to the end. It
// stops at the first error of fn or of a page and returns it.
func (c *Client) SandboxesAll(ctx context.Context, f SandboxFilter, fn func(vault.Sandbox) error) error {
	return c.resourcesAll(ctx, "/api/v1/sandboxes", f, fn)
}

// ComputersAll is SandboxesAll for computers only.
func (c *Client) ComputersAll(ctx context.Context, f SandboxFilter, fn func(vault.Sandbox) error) error {
	return c.resourcesAll(ctx, "/api/v1/computers", f, fn)
}

func (c *Client) listResources(ctx context.Context, path string, f SandboxFilter) (SandboxPage, error) {
	var out SandboxPage
	err := c.do(ctx, http.MethodGet, path, f.query(), nil, &out)
	return out, err
}

func (c *Client) resourcesAll(ctx context.Context, path string, f SandboxFilter, fn func(vault.Sandbox) error) error {
	return follow(f.Cursor, func(cursor string) (string, error) {
		f.Cursor = cursor
		page, err := c.listResources(ctx, path, f)
		return page.NextCursor, eachOf(page.Sandboxes, err, fn)
	})
}

// GetSandbox returns one sandbox or computer.
func (c *Client) GetSandbox(ctx context.Context, id string) (vault.Sandbox, error) {
	var out vault.Sandbox
	err := c.do(ctx, http.MethodGet, "/api/v1/sandboxes/"+seg(id), nil, nil, &out)
	return out, err
}

// SandboxUpdate changes what may change of a sandbox; a nil field is left
// as it is.
type SandboxUpdate = vault.SandboxUpdate

// UpdateSandbox changes a sandbox or computer (its source_addrs) and
// returns it as stored. Addresses another sandbox claims are refused
// (409, an *Error with Status http.StatusConflict) and nothing changes.
func (c *Client) UpdateSandbox(ctx context.Context, id string, in SandboxUpdate) (vault.Sandbox, error) {
	var out vault.Sandbox
	err := c.do(ctx, http.MethodPatch, "/api/v1/sandboxes/"+seg(id), nil, in, &out)
	return out, err
}

// SetSourceAddrs replaces a sandbox's source_addrs (nil or empty removes
// them all), the addresses the transparent listener knows it by.
func (c *Client) SetSourceAddrs(ctx context.Context, id string, addrs []string) (vault.Sandbox, error) {
	if addrs == nil {
		addrs = []string{}
	}
	return c.UpdateSandbox(ctx, id, SandboxUpdate{SourceAddrs: &addrs})
}

// DeleteSandbox deletes a sandbox or computer, its bindings, the secrets
// scoped to it and its placeholders.
func (c *Client) DeleteSandbox(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/api/v1/sandboxes/"+seg(id), nil, nil, nil)
}

// SandboxEnv returns the env a sandbox should run with now.
func (c *Client) SandboxEnv(ctx context.Context, id string) (SandboxEnv, error) {
	var out SandboxEnv
	err := c.do(ctx, http.MethodGet, "/api/v1/sandboxes/"+seg(id)+"/env", nil, nil, &out)
	return out, err
}

// Explain shows the six-level walk for one name of a sandbox. A host, if
// not empty, is checked against the matched secret's allowed_hosts.
func (c *Client) Explain(ctx context.Context, sandboxID, name, host string) (resolver.Explanation, error) {
	var out resolver.Explanation
	q := url.Values{}
	setIf(q, "host", host)
	err := c.do(ctx, http.MethodGet, "/api/v1/sandboxes/"+seg(sandboxID)+"/explain/"+seg(name), q, nil, &out)
	return out, err
}

// ReissueToken gives a sandbox or computer a new proxy token, valid for
// ttl ("24h", "7d"; empty: no expiry), and returns it with the env that
// carries it. The old token stops at once.
func (c *Client) ReissueToken(ctx context.Context, id, ttl string) (SandboxCreated, error) {
	var in struct {
		TokenTTL string `json:"token_ttl,omitempty"`
	}
	in.TokenTTL = ttl
	var out SandboxCreated
	err := c.do(ctx, http.MethodPost, "/api/v1/sandboxes/"+seg(id)+"/token", nil, in, &out)
	return out, err
}
