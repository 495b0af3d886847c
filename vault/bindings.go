package vault

import (
	"bytes"
	"fmt"

	"github.com/egressd/egressd/vault/storage"
)

// BindingInput attaches a secret to a resource.
type BindingInput struct {
	SecretID     string       `json:"secret_id"`
	ResourceID   string       `json:"resource_id"`
	ResourceType ResourceType `json:"resource_type"`
	ExposeAsEnv  string       `json:"expose_as_env"`
}

// CreateBinding binds a secret of the tenant to a sandbox or computer of the
// tenant. Binding the same secret to the same resource again updates the
// env var name of the existing binding.
func (s *Store) CreateBinding(tenantID string, in BindingInput) (Binding, error) {
	if in.SecretID == "" {
		return Binding{}, invalid("secret_id", "required")
	}
	if in.ResourceID == "" {
		return Binding{}, invalid("resource_id", "required")
	}
	if in.ResourceType == "" {
		in.ResourceType = ResourceSandbox
	}
	if !in.ResourceType.Valid() {
		return Binding{}, invalid("resource_type", "unknown resource type %q (want sandbox or computer)", in.ResourceType)
	}
	if in.ExposeAsEnv != "" && !ValidEnvName(in.ExposeAsEnv) {
		return Binding{}, invalid("expose_as_env", "must be an environment variable name ([A-Za-z_][A-Za-z0-9_]*)")
	}
	var b Binding
	err := s.update(tenantID, func(tx storage.Tx) error {
		sec, err := txSecret(tx, tenantID, in.SecretID)
		if err != nil {
			return err
		}
		sbx, err := txSandbox(tx, tenantID, in.ResourceID)
		if err != nil {
			return err
		}
		if sbx.ResourceType != in.ResourceType {
			return invalid("resource_type", "%q is a %s, not a %s", in.ResourceID, sbx.ResourceType, in.ResourceType)
		}
		if b, err = s.txBind(tx, tenantID, in.SecretID, in.ResourceID, in.ResourceType, in.ExposeAsEnv); err != nil {
			return err
		}
		return s.txAudit(tx, ActionBindingCreated, bindingAudit(&b, &sec.Secret, &sbx))
	})
	return b, err
}

func (s *Store) txBind(tx storage.Tx, tenantID, secretID, resourceID string, rt ResourceType, env string) (Binding, error) {
	var b Binding
	p := prefix(tenantID, secretID)
	c := tx.Bucket(bBindBySecret).Cursor()
	for k, _ := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, _ = c.Next() {
		var old Binding
		if _, err := getJSON(tx.Bucket(bBindings), key(tenantID, string(k[len(p):])), &old); err != nil {
			return b, err
		}
		if old.ResourceID == resourceID {
			old.ExposeAsEnv = env
			return old, putJSON(tx.Bucket(bBindings), key(tenantID, old.ID), &old)
		}
	}
	b = Binding{ID: newID(prefixBinding), TenantID: tenantID, SecretID: secretID, ResourceID: resourceID, ResourceType: rt, ExposeAsEnv: env, CreatedAt: s.stamp()}
	if err := putJSON(tx.Bucket(bBindings), key(tenantID, b.ID), &b); err != nil {
		return b, err
	}
	if err := tx.Bucket(bBindByRes).Put(key(tenantID, resourceID, b.ID), nil); err != nil {
		return b, err
	}
	return b, tx.Bucket(bBindBySecret).Put(key(tenantID, secretID, b.ID), nil)
}

// DeleteBinding removes one binding.
func (s *Store) DeleteBinding(tenantID, id string) error {
	return s.update(tenantID, func(tx storage.Tx) error {
		b, err := txDeleteBinding(tx, tenantID, id)
		if err != nil || s.audit.actor.Kind == "" {
			return err
		}
		// The secret and the sandbox outlive their binding; should either
		// be gone, the row names it by id alone.
		sec := &storedSecret{Secret: Secret{ID: b.SecretID, TenantID: tenantID}}
		if row, err := txSecret(tx, tenantID, b.SecretID); err == nil {
			sec = row
		}
		sbx, err := txSandbox(tx, tenantID, b.ResourceID)
		if err != nil {
			sbx = Sandbox{ID: b.ResourceID, TenantID: tenantID, ResourceType: b.ResourceType}
		}
		return s.txAudit(tx, ActionBindingDeleted, bindingAudit(&b, &sec.Secret, &sbx))
	})
}

// txDeleteBinding deletes a binding and returns what it was.
func txDeleteBinding(tx storage.Tx, tenantID, id string) (Binding, error) {
	var b Binding
	ok, err := getJSON(tx.Bucket(bBindings), key(tenantID, id), &b)
	if err != nil {
		return b, err
	}
	if !ok || b.TenantID != tenantID {
		return b, fmt.Errorf("binding %q: %w", id, ErrNotFound)
	}
	if err := tx.Bucket(bBindByRes).Delete(key(tenantID, b.ResourceID, b.ID)); err != nil {
		return b, err
	}
	if err := tx.Bucket(bBindBySecret).Delete(key(tenantID, b.SecretID, b.ID)); err != nil {
		return b, err
	}
	return b, tx.Bucket(bBindings).Delete(key(tenantID, b.ID))
}

// Binding returns one binding.
func (s *Store) Binding(tenantID, id string) (Binding, error) {
	var b Binding
	err := s.view(func(tx storage.Tx) error {
		ok, err := getJSON(tx.Bucket(bBindings), key(tenantID, id), &b)
		if err == nil && (!ok || b.TenantID != tenantID) {
			err = fmt.Errorf("binding %q: %w", id, ErrNotFound)
		}
		return err
	})
	return b, err
}

// BindingFilter narrows ListBindings; empty fields match everything.
type BindingFilter struct {
	ResourceID   string
	ResourceType ResourceType
	SecretID     string
	// ResourceIDs, when not nil, keeps only bindings on these resources.
	ResourceIDs map[string]bool
}

// ListBindings lists a tenant's bindings.
func (s *Store) ListBindings(tenantID string, f BindingFilter) ([]Binding, error) {
	out := []Binding{}
	err := s.view(func(tx storage.Tx) error {
		p := prefix(tenantID)
		c := tx.Bucket(bBindings).Cursor()
		for k, v := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
			var b Binding
			if err := unmarshal(v, &b); err != nil {
				return err
			}
			if (f.ResourceID == "" || b.ResourceID == f.ResourceID) &&
				(f.ResourceType == "" || b.ResourceType == f.ResourceType) &&
				(f.SecretID == "" || b.SecretID == f.SecretID) &&
				(f.ResourceIDs == nil || f.ResourceIDs[b.ResourceID]) {
				out = append(out, b)
			}
		}
		return nil
	})
	return out, err
}

func txBindingsOf(tx storage.Tx, tenantID, resourceID string) ([]Binding, error) {
	var out []Binding
	p := prefix(tenantID, resourceID)
	c := tx.Bucket(bBindByRes).Cursor()
	for k, _ := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, _ = c.Next() {
		var b Binding
		ok, err := getJSON(tx.Bucket(bBindings), key(tenantID, string(k[len(p):])), &b)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, b)
		}
	}
	return out, nil
}
