package vault

import (
	"fmt"

	"github.com/egressd/egressd/vault/storage"
)

// Reader reads a consistent snapshot of the vault. It is valid only inside
// the function given to Store.Read; nothing it returns aliases the file.
type Reader struct {
	s  *Store
	tx storage.Tx
	// last is the secret row decoded last: the resolver reads a secret's
	// metadata in the walk and then opens its value, one decode for both.
	last *storedSecret
}

// secretRow decodes a secret's row, reusing the last one decoded.
func (r *Reader) secretRow(tenantID, id string) (*storedSecret, error) {
	if r.last != nil && r.last.ID == id && r.last.TenantID == tenantID {
		return r.last, nil
	}
	row, err := txSecret(r.tx, tenantID, id)
	if err == nil {
		r.last = row
	}
	return row, err
}

// Read runs fn over one read transaction. Keep fn short: a long read
// transaction holds pages that writers cannot reuse.
func (s *Store) Read(fn func(r *Reader) error) error {
	return s.view(func(tx storage.Tx) error { return fn(&Reader{s: s, tx: tx}) })
}

// Tenant returns a tenant.
func (r *Reader) Tenant(id string) (Tenant, error) { return txTenant(r.tx, id) }

// Sandbox returns a sandbox of the tenant.
func (r *Reader) Sandbox(tenantID, id string) (Sandbox, error) { return txSandbox(r.tx, tenantID, id) }

// SandboxTenant returns the tenant a sandbox id belongs to.
func (r *Reader) SandboxTenant(id string) (string, error) {
	tid := r.tx.Bucket(bSandboxOwner).Get([]byte(id))
	if tid == nil {
		return "", fmt.Errorf("sandbox %q: %w", id, ErrNotFound)
	}
	return string(tid), nil
}

// BindingsOf lists the bindings on a resource, oldest id order.
func (r *Reader) BindingsOf(tenantID, resourceID string) ([]Binding, error) {
	return txBindingsOf(r.tx, tenantID, resourceID)
}

// Secret returns a secret's metadata by id.
func (r *Reader) Secret(tenantID, id string) (Secret, error) {
	row, err := r.secretRow(tenantID, id)
	if err != nil {
		return Secret{}, err
	}
	return row.Secret, nil
}

// SecretAt returns the secret with this scope, scope owner id and name, or
// ErrNotFound. An empty owner matches nothing except at scope tenant.
func (r *Reader) SecretAt(tenantID string, scope Scope, owner, name string) (Secret, error) {
	if owner == "" && scope != ScopeTenant {
		return Secret{}, fmt.Errorf("secret: %w", ErrNotFound)
	}
	id := r.tx.Bucket(bSecretIdx).Get(key(tenantID, string(scope), owner, name))
	if id == nil {
		return Secret{}, fmt.Errorf("secret: %w", ErrNotFound)
	}
	return r.Secret(tenantID, string(id))
}

// ScopedNames lists the names of secrets at (scope, owner), for building a
// sandbox's env. An empty owner lists nothing except at scope tenant.
func (r *Reader) ScopedNames(tenantID string, scope Scope, owner string) []string {
	if owner == "" && scope != ScopeTenant {
		return nil
	}
	var out []string
	p := prefix(tenantID, string(scope), owner)
	c := r.tx.Bucket(bSecretIdx).Cursor()
	for k, _ := c.Seek(p); k != nil && len(k) > len(p) && string(k[:len(p)]) == string(p); k, _ = c.Next() {
		out = append(out, string(k[len(p):]))
	}
	return out
}

// Placeholders returns the placeholders issued to a sandbox, by name.
func (r *Reader) Placeholders(sandboxID string) map[string]string {
	out := map[string]string{}
	p := prefix(sandboxID)
	c := r.tx.Bucket(bSandboxPH).Cursor()
	for k, v := c.Seek(p); k != nil && len(k) > len(p) && string(k[:len(p)]) == string(p); k, v = c.Next() {
		out[string(k[len(p):])] = string(v)
	}
	return out
}

// OpenValue decrypts the current value (and refresh token, if any) of a
// secret. This is the only way a value leaves the vault.
func (r *Reader) OpenValue(tenantID, secretID string) (value, refresh Value, version int, err error) {
	row, err := r.secretRow(tenantID, secretID)
	if err != nil {
		return Value{}, Value{}, 0, err
	}
	if row.Value == nil {
		return Value{}, Value{}, 0, fmt.Errorf("secret %q: %w", secretID, ErrDecrypt)
	}
	v, err := r.s.keys.open(row.Value, valueAD(row.TenantID, row.ID, row.Version, "value"))
	if err != nil {
		return Value{}, Value{}, 0, fmt.Errorf("secret %q version %d: %w", secretID, row.Version, err)
	}
	if row.Refresh != nil {
		rt, err := r.s.keys.open(row.Refresh, valueAD(row.TenantID, row.ID, row.Version, "refresh_token"))
		if err != nil {
			return Value{}, Value{}, 0, fmt.Errorf("secret %q version %d refresh token: %w", secretID, row.Version, err)
		}
		refresh = NewValue(rt)
	}
	return NewValue(v), refresh, row.Version, nil
}
