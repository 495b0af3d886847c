package client

import (
	"context"
	"net/http"
	"net/url"

	"github.com/egressd/egressd/vault"
)

// BindingInput attaches a secret to a sandbox or computer.
type BindingInput = vault.BindingInput

// BindingFilter narrows ListBindings; empty fields match everything.
type BindingFilter struct {
	ResourceID   string
	ResourceType vault.ResourceType
	SecretID     string
}

func (f BindingFilter) query() url.Values {
	q := url.Values{}
	setIf(q, "resource_id", f.ResourceID)
	setIf(q, "resource_type", string(f.ResourceType))
	setIf(q, "secret_id", f.SecretID)
	return q
}

// CreateBinding binds a secret to a resource under an env var name.
// Binding the same secret to the same resource again renames its env var.
func (c *Client) CreateBinding(ctx context.Context, in BindingInput) (vault.Binding, error) {
	var out vault.Binding
	err := c.do(ctx, http.MethodPost, "/api/v1/egress/bindings", nil, in, &out)
	return out, err
}

// ListBindings lists bindings.
func (c *Client) ListBindings(ctx context.Context, f BindingFilter) ([]vault.Binding, error) {
	var out struct {
		Bindings []vault.Binding `json:"bindings"`
	}
	err := c.do(ctx, http.MethodGet, "/api/v1/egress/bindings", f.query(), nil, &out)
	return out.Bindings, err
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
