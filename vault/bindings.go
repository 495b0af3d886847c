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
	if err := tx.Bucket(bBindBySecret).Put(key(tenantID, secretID, b.ID), nil); err != nil {
		return b, err
	}
	return b, txIndexBinding(tx, &b)
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
	if err := txUnindexBinding(tx, &b); err != nil {
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

// BindingFilter narrows ListBindings and ListBindingsPage; empty fields
// match everything. Each field is served from an index.
type BindingFilter struct {
	ResourceID   string
	ResourceType ResourceType
	SecretID     string
	// ExternalUserID keeps only bindings on the sandboxes and computers of
	// that external user (a browser token's view).
	ExternalUserID string
	// ResourceIDs, when not nil, keeps only bindings on these resources.
	ResourceIDs map[string]bool
}

func (f *BindingFilter) match(b *Binding) bool {
	return (f.ResourceID == "" || b.ResourceID == f.ResourceID) &&
		(f.ResourceType == "" || b.ResourceType == f.ResourceType) &&
		(f.SecretID == "" || b.SecretID == f.SecretID) &&
		(f.ResourceIDs == nil || f.ResourceIDs[b.ResourceID])
}

func (f *BindingFilter) check() error {
	if f.ResourceType != "" && !f.ResourceType.Valid() {
		return invalid("resource_type", "unknown resource type %q (want sandbox or computer)", f.ResourceType)
	}
	return checkFilterIDs(
		fieldValue{"resource_id", f.ResourceID},
		fieldValue{"secret_id", f.SecretID},
		fieldValue{fieldExternalUserID, f.ExternalUserID},
	)
}

// ListBindings lists every binding of a tenant that f matches, in id
// order. For egressd's own callers; the API pages (ListBindingsPage).
func (s *Store) ListBindings(tenantID string, f BindingFilter) ([]Binding, error) {
	out, _, err := s.listBindings(tenantID, f, Page{Limit: -1})
	return out, err
}

// ListBindingsPage returns a page of the tenant's bindings that f matches,
// in id order, and the cursor of the next page ("" after the last).
func (s *Store) ListBindingsPage(tenantID string, f BindingFilter, pg Page) ([]Binding, string, error) {
	if pg.Limit < 0 {
		return nil, "", invalid("limit", "1 to %d (default %d)", MaxListLimit, DefaultListLimit)
	}
	return s.listBindings(tenantID, f, pg)
}

func (s *Store) listBindings(tenantID string, f BindingFilter, pg Page) ([]Binding, string, error) {
	if err := f.check(); err != nil {
		return nil, "", err
	}
	q := &listQuery[Binding]{
		kind: listBindings, tenant: tenantID, rows: bBindings,
		filter:  filterKey(f.ResourceID, string(f.ResourceType), f.SecretID, f.ExternalUserID, idSetKey(f.ResourceIDs)),
		sources: func(tx storage.Tx) ([]postings, error) { return f.sources(tx, tenantID) },
		decode: func(v []byte) (Binding, bool, error) {
			var b Binding
			if err := unmarshal(v, &b); err != nil {
				return b, false, err
			}
			return b, b.TenantID == tenantID && f.match(&b), nil
		},
	}
	return runList(s, q, pg)
}

// sources are the id lists of f's filters: binding_res and binding_sec for
// a resource and a secret, binding_fields for a resource type, and the
// bindings of the resources given or of the external user's.
func (f *BindingFilter) sources(tx storage.Tx, tenantID string) ([]postings, error) {
	var srcs []postings
	if f.ResourceID != "" {
		srcs = append(srcs, newIndexPostings(tx, bBindByRes, prefix(tenantID, f.ResourceID)))
	}
	if f.SecretID != "" {
		srcs = append(srcs, newIndexPostings(tx, bBindBySecret, prefix(tenantID, f.SecretID)))
	}
	if f.ResourceType != "" {
		srcs = append(srcs, newIndexPostings(tx, bBindingFields, fieldPrefix(tenantID, fieldResourceType, string(f.ResourceType))))
	}
	// The bindings of a set of resources: each resource's, gathered.
	bindingsOn := func(resources func(yield func(string) bool)) *sortedPostings {
		var ids [][]byte
		c := tx.Bucket(bBindByRes).Cursor()
		for rid := range resources {
			p := prefix(tenantID, rid)
			for k, _ := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, _ = c.Next() {
				ids = append(ids, bytes.Clone(k[len(p):]))
			}
		}
		return newSortedPostings(ids)
	}
	if f.ExternalUserID != "" {
		srcs = append(srcs, bindingsOn(func(yield func(string) bool) {
			p := fieldPrefix(tenantID, fieldExternalUserID, f.ExternalUserID)
			c := tx.Bucket(bSandboxFields).Cursor()
			for k, _ := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, _ = c.Next() {
				if !yield(string(k[len(p):])) {
					return
				}
			}
		}))
	}
	if f.ResourceIDs != nil {
		srcs = append(srcs, bindingsOn(func(yield func(string) bool) {
			for rid, ok := range f.ResourceIDs {
				if ok && !yield(rid) {
					return
				}
			}
		}))
	}
	return srcs, nil
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
