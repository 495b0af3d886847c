package vault

import (
	"bytes"
	"fmt"

	"github.com/egressd/egressd/vault/storage"
)

// The lists' indexes (issue 15): one bucket per kind of row, keyed
// tenant \0 field \0 value \0 id → nothing, one key per filterable field
// that is not empty. Under one (tenant, field, value) the ids come in
// order, which is the lists' order, so a page of a filtered list is read
// from the index alone and a filter of several fields is the intersection
// of their id lists (listpage.go). Every write of a row keeps them in
// step in its own transaction; Open builds them for a vault written
// before they existed (ensureListIndexes).
//
// Bindings are also found through binding_res and binding_sec (tenant \0
// resource or secret id \0 binding id), which predate these.
var (
	bSecretFields  = []byte("secret_fields")  // tenant \0 field \0 value \0 secret id → nil
	bBindingFields = []byte("binding_fields") // tenant \0 field \0 value \0 binding id → nil
	bSandboxFields = []byte("sandbox_fields") // tenant \0 field \0 value \0 sandbox id → nil
)

// listIndexBuckets are the buckets above.
func listIndexBuckets() [][]byte {
	return [][]byte{bSecretFields, bBindingFields, bSandboxFields}
}

func init() { allBuckets = append(allBuckets, listIndexBuckets()...) }

// The indexed fields: the filters' query parameter names.
const (
	fieldScope               = "scope"
	fieldType                = "type"
	fieldWorkspaceID         = "workspace_id"
	fieldOwnerUserID         = "owner_user_id"
	fieldExternalUserID      = "external_user_id"
	fieldExternalWorkspaceID = "external_workspace_id"
	fieldExternalProjectID   = "external_project_id"
	fieldName                = "name"
	fieldResourceType        = "resource_type"
	// fieldSecretType keys a binding by its secret and resource type:
	// tenant \0 secret_type \0 secret id \0 resource type \0 binding id,
	// so whether a secret is bound to any resource of a type is one seek.
	fieldSecretType = "secret_type"
)

// A secret's resource_type entry (tenant \0 resource_type \0 type \0 id)
// stands for the list's filter of that name: the secret is scoped to a
// resource of the type, or bound to one or more (syncSecretResourceType).

// metaListIndexes holds the version of the indexes the store holds; Open
// builds them when it is not listIndexVersion.
var metaListIndexes = []byte("list_indexes")

const listIndexVersion = "1"

// resourceTypes are the resource types, for the secrets' resource_type
// entries.
var resourceTypes = []ResourceType{ResourceSandbox, ResourceComputer}

type fieldValue struct{ field, value string }

// secretFields are a secret's index entries but resource_type's.
func secretFields(s *Secret) []fieldValue {
	return nonEmpty(
		fieldValue{fieldScope, string(s.Scope)},
		fieldValue{fieldType, s.Type},
		fieldValue{fieldWorkspaceID, s.WorkspaceID},
		fieldValue{fieldOwnerUserID, s.OwnerUserID},
		fieldValue{fieldExternalUserID, s.ExternalUserID},
		fieldValue{fieldExternalWorkspaceID, s.ExternalWorkspaceID},
		fieldValue{fieldName, s.Name},
	)
}

func sandboxFields(x *Sandbox) []fieldValue {
	return nonEmpty(
		fieldValue{fieldResourceType, string(x.ResourceType)},
		fieldValue{fieldOwnerUserID, x.OwnerUserID},
		fieldValue{fieldWorkspaceID, x.WorkspaceID},
		fieldValue{fieldExternalUserID, x.ExternalUserID},
		fieldValue{fieldExternalWorkspaceID, x.ExternalWorkspaceID},
		fieldValue{fieldExternalProjectID, x.ExternalProjectID},
	)
}

func nonEmpty(fvs ...fieldValue) []fieldValue {
	out := fvs[:0]
	for _, fv := range fvs {
		if fv.value != "" {
			out = append(out, fv)
		}
	}
	return out
}

// fieldPrefix is the index prefix of the rows of tenant whose field holds
// value.
func fieldPrefix(tenantID, field, value string) []byte { return prefix(tenantID, field, value) }

// txReindex replaces the entries of row id from old (nil: a new row) by
// those of now (nil: a deleted row), writing only what changed.
func txReindex(b storage.Bucket, tenantID, id string, old, now []fieldValue) error {
	for _, fv := range old {
		if !hasFieldValue(now, fv) {
			if err := b.Delete(key(tenantID, fv.field, fv.value, id)); err != nil {
				return err
			}
		}
	}
	for _, fv := range now {
		if !hasFieldValue(old, fv) {
			if err := b.Put(key(tenantID, fv.field, fv.value, id), nil); err != nil {
				return err
			}
		}
	}
	return nil
}

func hasFieldValue(fvs []fieldValue, x fieldValue) bool {
	for _, fv := range fvs {
		if fv == x {
			return true
		}
	}
	return false
}

// txIndexSecret moves the index entries of a secret written from old (nil
// when it was created) to now.
func txIndexSecret(tx storage.Tx, old, now *Secret) error {
	var was []fieldValue
	if old != nil {
		was = secretFields(old)
	}
	if err := txReindex(tx.Bucket(bSecretFields), now.TenantID, now.ID, was, secretFields(now)); err != nil {
		return err
	}
	return syncSecretResourceType(tx, now.TenantID, now.ID, now.ResourceType)
}

// txUnindexSecret removes the index entries of a deleted secret.
func txUnindexSecret(tx storage.Tx, sec *Secret) error {
	b := tx.Bucket(bSecretFields)
	if err := txReindex(b, sec.TenantID, sec.ID, secretFields(sec), nil); err != nil {
		return err
	}
	for _, rt := range resourceTypes {
		if err := b.Delete(key(sec.TenantID, fieldResourceType, string(rt), sec.ID)); err != nil {
			return err
		}
	}
	return nil
}

// syncSecretResourceType sets the secret's resource_type entries: one for
// each type it is scoped to (own) or bound to.
func syncSecretResourceType(tx storage.Tx, tenantID, secretID string, own ResourceType) error {
	b := tx.Bucket(bSecretFields)
	bf := tx.Bucket(bBindingFields)
	for _, rt := range resourceTypes {
		k := key(tenantID, fieldResourceType, string(rt), secretID)
		has := own == rt || hasPrefix(bf, prefix(tenantID, fieldSecretType, secretID, string(rt)))
		var err error
		switch {
		case has && b.Get(k) == nil:
			err = b.Put(k, nil)
		case !has:
			err = b.Delete(k)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// syncBoundSecret is syncSecretResourceType after a binding of the secret
// was written or deleted; a secret gone has no entries to keep.
func syncBoundSecret(tx storage.Tx, tenantID, secretID string) error {
	raw := tx.Bucket(bSecrets).Get(key(tenantID, secretID))
	if raw == nil {
		return nil
	}
	var own struct {
		ResourceType ResourceType `json:"resource_type"`
	}
	if err := unmarshal(raw, &own); err != nil {
		return err
	}
	return syncSecretResourceType(tx, tenantID, secretID, own.ResourceType)
}

func hasPrefix(b storage.Bucket, p []byte) bool {
	k, _ := b.Cursor().Seek(p)
	return k != nil && bytes.HasPrefix(k, p)
}

func bindingKeys(b *Binding) [][]byte {
	return [][]byte{
		key(b.TenantID, fieldResourceType, string(b.ResourceType), b.ID),
		key(b.TenantID, fieldSecretType, b.SecretID, string(b.ResourceType), b.ID),
	}
}

// txIndexBinding adds a new binding's entries, and its secret's
// resource_type entry.
func txIndexBinding(tx storage.Tx, b *Binding) error {
	bf := tx.Bucket(bBindingFields)
	for _, k := range bindingKeys(b) {
		if err := bf.Put(k, nil); err != nil {
			return err
		}
	}
	return syncBoundSecret(tx, b.TenantID, b.SecretID)
}

// txUnindexBinding removes a deleted binding's entries, and its secret's
// resource_type entry when no other binding of that type is left.
func txUnindexBinding(tx storage.Tx, b *Binding) error {
	bf := tx.Bucket(bBindingFields)
	for _, k := range bindingKeys(b) {
		if err := bf.Delete(k); err != nil {
			return err
		}
	}
	return syncBoundSecret(tx, b.TenantID, b.SecretID)
}

// txIndexSandbox adds (now) or removes (gone) a sandbox's entries;
// attribution never changes.
func txIndexSandbox(tx storage.Tx, x *Sandbox, gone bool) error {
	var old, now []fieldValue
	if gone {
		old = sandboxFields(x)
	} else {
		now = sandboxFields(x)
	}
	return txReindex(tx.Bucket(bSandboxFields), x.TenantID, x.ID, old, now)
}

// ensureListIndexes builds the lists' indexes of a store that has none, or
// an older version of them, once: a store created by this version has them
// from its first write. A read tells first, so an up-to-date store takes no
// write transaction; replicas opening at once build them once (the marker
// is checked again in the build's transaction).
//
// The indexes are kept by every write of this version on. An older egressd
// writing to the same store (a downgrade, an old replica during a rolling
// upgrade) leaves them behind: RebuildListIndexes builds them again.
func (s *Store) ensureListIndexes() error {
	current := false
	err := s.view(func(tx storage.Tx) error {
		current = string(tx.Bucket(bMeta).Get(metaListIndexes)) == listIndexVersion
		return nil
	})
	if err != nil || current {
		return err
	}
	return s.backend.Update(func(tx storage.Tx) error {
		if string(tx.Bucket(bMeta).Get(metaListIndexes)) == listIndexVersion {
			return nil
		}
		_, err := txBuildListIndexes(tx)
		return err
	})
}

// ListIndexCounts is what RebuildListIndexes indexed.
type ListIndexCounts struct {
	Secrets   int `json:"secrets"`
	Bindings  int `json:"bindings"`
	Sandboxes int `json:"sandboxes"`
}

// RebuildListIndexes drops the indexes of the secrets', bindings' and
// sandboxes' lists and builds them again from the rows, in one
// transaction; the lists' answers are unchanged but for rows an older
// egressd wrote (`egressd vault reindex`).
func (s *Store) RebuildListIndexes() (ListIndexCounts, error) {
	var n ListIndexCounts
	err := s.backend.Update(func(tx storage.Tx) error {
		var err error
		n, err = txBuildListIndexes(tx)
		return err
	})
	return n, err
}

func txBuildListIndexes(tx storage.Tx) (n ListIndexCounts, err error) {
	for _, name := range listIndexBuckets() {
		if err := clearBucket(tx.Bucket(name)); err != nil {
			return n, err
		}
	}
	sf, bf, xf := tx.Bucket(bSecretFields), tx.Bucket(bBindingFields), tx.Bucket(bSandboxFields)
	secrets := tx.Bucket(bSecrets)
	err = secrets.ForEach(func(_, v []byte) error {
		var sec Secret
		if err := unmarshal(v, &sec); err != nil {
			return err
		}
		n.Secrets++
		if err := txReindex(sf, sec.TenantID, sec.ID, nil, secretFields(&sec)); err != nil {
			return err
		}
		if sec.ResourceType != "" {
			return sf.Put(key(sec.TenantID, fieldResourceType, string(sec.ResourceType), sec.ID), nil)
		}
		return nil
	})
	if err != nil {
		return n, fmt.Errorf("vault: index secrets: %w", err)
	}
	err = tx.Bucket(bBindings).ForEach(func(_, v []byte) error {
		var b Binding
		if err := unmarshal(v, &b); err != nil {
			return err
		}
		n.Bindings++
		for _, k := range bindingKeys(&b) {
			if err := bf.Put(k, nil); err != nil {
				return err
			}
		}
		if secrets.Get(key(b.TenantID, b.SecretID)) == nil {
			return nil
		}
		return sf.Put(key(b.TenantID, fieldResourceType, string(b.ResourceType), b.SecretID), nil)
	})
	if err != nil {
		return n, fmt.Errorf("vault: index bindings: %w", err)
	}
	err = tx.Bucket(bSandboxes).ForEach(func(_, v []byte) error {
		var x Sandbox
		if err := unmarshal(v, &x); err != nil {
			return err
		}
		n.Sandboxes++
		return txReindex(xf, x.TenantID, x.ID, nil, sandboxFields(&x))
	})
	if err != nil {
		return n, fmt.Errorf("vault: index sandboxes: %w", err)
	}
	return n, tx.Bucket(bMeta).Put(metaListIndexes, []byte(listIndexVersion))
}

// clearBucket deletes every key of b.
func clearBucket(b storage.Bucket) error {
	var keys [][]byte
	if err := b.ForEach(func(k, _ []byte) error {
		keys = append(keys, bytes.Clone(k))
		return nil
	}); err != nil {
		return err
	}
	for _, k := range keys {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}
