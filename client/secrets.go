package client

import (
	"context"
	"net/http"
	"net/url"

	"github.com/egressd/egressd/vault"
)

// SecretInput is the body of an upsert: name, value, scope and its owner
// id, and the optional fields of DESIGN.md. It never prints its value.
type SecretInput = vault.SecretInput

// RotateInput is a secret's new value.
type RotateInput = vault.RotateInput

// UpsertResult is what an upsert did: the secret's metadata (never its
// value), whether it was created, and the binding it made, if any.
type UpsertResult struct {
	Secret  vault.Secret   `json:"secret"`
	Created bool           `json:"created"`
	Binding *vault.Binding `json:"binding,omitempty"`
}

// SecretFilter narrows ListSecrets and SecretsAll; empty fields match
// everything. A resource filter selects the secrets bound to that
// resource; a resource type alone, those bound to or scoped to any
// resource of that type.
type SecretFilter struct {
	ResourceID          string
	ResourceType        vault.ResourceType
	Scope               vault.Scope
	Type                string
	WorkspaceID         string
	OwnerUserID         string
	ExternalUserID      string
	ExternalWorkspaceID string
	Name                string
	// Limit is the most secrets of a page, 1 to 1000; zero means the
	// server's default (100).
	Limit int
	// Cursor is the NextCursor of the previous page, with the same
	// filters (the server refuses it with others); empty starts at the
	// first secret.
	Cursor string
}

func (f SecretFilter) query() url.Values {
	q := url.Values{}
	setIf(q, "resource_id", f.ResourceID)
	setIf(q, "resource_type", string(f.ResourceType))
	setIf(q, "scope", string(f.Scope))
	setIf(q, "type", f.Type)
	setIf(q, "workspace_id", f.WorkspaceID)
	setIf(q, "owner_user_id", f.OwnerUserID)
	setIf(q, "external_user_id", f.ExternalUserID)
	setIf(q, "external_workspace_id", f.ExternalWorkspaceID)
	setIf(q, "name", f.Name)
	setPage(q, f.Limit, f.Cursor)
	return q
}

// SecretPage is one page of secrets' metadata, in id order. NextCursor is
// "" after the last page.
type SecretPage struct {
	Secrets    []vault.Secret `json:"secrets"`
	NextCursor string         `json:"next_cursor"`
}

// UpsertSecret creates the secret, or updates the one with the same scope,
// scope owner id and name (version + 1). With resource_id and
// expose_as_env it also binds the secret to that resource.
func (c *Client) UpsertSecret(ctx context.Context, in SecretInput) (UpsertResult, error) {
	var out UpsertResult
	err := c.do(ctx, http.MethodPost, "/api/v1/egress/secrets", nil, in, &out)
	return out, err
}

// CreateSecret is UpsertSecret under the name most callers look for.
func (c *Client) CreateSecret(ctx context.Context, in SecretInput) (UpsertResult, error) {
	return c.UpsertSecret(ctx, in)
}

// ListSecrets returns one page of secrets' metadata (a browser token: of
// its external user's secrets).
func (c *Client) ListSecrets(ctx context.Context, f SecretFilter) (SecretPage, error) {
	var out SecretPage
	err := c.do(ctx, http.MethodGet, "/api/v1/egress/secrets", f.query(), nil, &out)
	return out, err
}

// SecretsAll calls fn with every secret that matches f, in id order,
// following the pages' cursors from f.Cursor to the end. It stops at the
// first error of fn or of a page and returns it.
func (c *Client) SecretsAll(ctx context.Context, f SecretFilter, fn func(vault.Secret) error) error {
	return follow(f.Cursor, func(cursor string) (string, error) {
		f.Cursor = cursor
		page, err := c.ListSecrets(ctx, f)
		return page.NextCursor, eachOf(page.Secrets, err, fn)
	})
}

// GetSecret returns one secret's metadata, version and timestamps.
func (c *Client) GetSecret(ctx context.Context, id string) (vault.Secret, error) {
	var out vault.Secret
	err := c.do(ctx, http.MethodGet, "/api/v1/egress/secrets/"+seg(id), nil, nil, &out)
	return out, err
}

// RotateSecret stores a new value as version + 1; placeholders stay.
func (c *Client) RotateSecret(ctx context.Context, id string, in RotateInput) (vault.Secret, error) {
	var out vault.Secret
	err := c.do(ctx, http.MethodPost, "/api/v1/egress/secrets/"+seg(id)+"/rotate", nil, in, &out)
	return out, err
}

// DisableSecret revokes a secret at once: it counts as absent from the
// next resolution on.
func (c *Client) DisableSecret(ctx context.Context, id string) (vault.Secret, error) {
	var out vault.Secret
	err := c.do(ctx, http.MethodPost, "/api/v1/egress/secrets/"+seg(id)+"/disable", nil, nil, &out)
	return out, err
}

// EnableSecret restores a disabled secret.
func (c *Client) EnableSecret(ctx context.Context, id string) (vault.Secret, error) {
	var out vault.Secret
	err := c.do(ctx, http.MethodPost, "/api/v1/egress/secrets/"+seg(id)+"/enable", nil, nil, &out)
	return out, err
}

// DeleteSecret deletes a secret and its bindings.
func (c *Client) DeleteSecret(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/api/v1/egress/secrets/"+seg(id), nil, nil, nil)
}

// BindingInput attaches a secret to a sandbox or computer.
type BindingInput = vault.BindingInput

// BindingFilter narrows ListBindings and BindingsAll; empty fields match
// everything.
type BindingFilter struct {
	ResourceID   string
	ResourceType vault.ResourceType
	SecretID     string
	// Limit is the most bindings of a page, 1 to 1000; zero means the
	// server's default (100).
	Limit int
	// Cursor is the NextCursor of the previous page, with the same
	// filters; empty starts at the first binding.
	Cursor string
}

func (f BindingFilter) query() url.Values {
	q := url.Values{}
	setIf(q, "resource_id", f.ResourceID)
	setIf(q, "resource_type", string(f.ResourceType))
	setIf(q, "secret_id", f.SecretID)
	setPage(q, f.Limit, f.Cursor)
	return q
}

// BindingPage is one page of bindings, in id order. NextCursor is "" after
// the last page.
type BindingPage struct {
	Bindings   []vault.Binding `json:"bindings"`
	NextCursor string          `json:"next_cursor"`
}

// CreateBinding binds a secret to a resource under an env var name.
// Binding the same secret to the same resource again renames its env var.
func (c *Client) CreateBinding(ctx context.Context, in BindingInput) (vault.Binding, error) {
	var out vault.Binding
	err := c.do(ctx, http.MethodPost, "/api/v1/egress/bindings", nil, in, &out)
	return out, err
}

// ListBindings returns one page of bindings (a browser token: of those on
// its external user's sandboxes).
func (c *Client) ListBindings(ctx context.Context, f BindingFilter) (BindingPage, error) {
	var out BindingPage
	err := c.do(ctx, http.MethodGet, "/api/v1/egress/bindings", f.query(), nil, &out)
	return out, err
}

// BindingsAll calls fn with every binding that matches f, in id order,
// following the pages' cursors from f.Cursor to the end. It stops at the
// first error of fn or of a page and returns it.
func (c *Client) BindingsAll(ctx context.Context, f BindingFilter, fn func(vault.Binding) error) error {
	return follow(f.Cursor, func(cursor string) (string, error) {
		f.Cursor = cursor
		page, err := c.ListBindings(ctx, f)
		return page.NextCursor, eachOf(page.Bindings, err, fn)
	})
}

// GetBinding returns one binding.
func (c *Client) GetBinding(ctx context.Context, id string) (vault.Binding, error) {
	var out vault.Binding
	err := c.do(ctx, http.MethodGet, "/api/v1/egress/bindings/"+seg(id), nil, nil, &out)
	return out, err
}

// DeleteBinding removes one binding.
func (c *Client) DeleteBinding(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/api/v1/egress/bindings/"+seg(id), nil, nil, nil)
}
