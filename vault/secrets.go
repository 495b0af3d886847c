package vault

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/egressd/egressd/vault/storage"
)

// storedSecret is a Secret's row: its metadata and its sealed values.
type storedSecret struct {
	Secret
	Value   *sealed `json:"value"`
	Refresh *sealed `json:"refresh,omitempty"`
}

// SecretInput creates or upserts a secret. The upsert key is (tenant,
// scope, scope owner id, name).
type SecretInput struct {
	Name                string `json:"name"`
	Value               string `json:"value"`
	Type                string `json:"type"`
	Scope               Scope  `json:"scope"`
	OwnerUserID         string `json:"owner_user_id"`
	WorkspaceID         string `json:"workspace_id"`
	ExternalUserID      string `json:"external_user_id"`
	ExternalWorkspaceID string `json:"external_workspace_id"`
	ExposeAsEnv         string `json:"expose_as_env"`
	// AllowedHosts (required) are the only hosts the value is sent to:
	// host names, IP addresses, "*.domain" (not over a public suffix), or
	// ["*"] where the tenant's allow_any_host_secrets is on.
	AllowedHosts []string `json:"allowed_hosts"`
	// SubstituteIn are the parts of a request where the value is
	// substituted; empty means DefaultSubstituteIn (headers only).
	SubstituteIn      []Location        `json:"substitute_in"`
	PlaceholderPrefix string            `json:"placeholder_prefix"`
	Metadata          map[string]string `json:"metadata"`
	ResourceID        string            `json:"resource_id"`
	ResourceType      ResourceType      `json:"resource_type"`
	RefreshToken      string            `json:"refresh_token"`
	ExpiresAt         *time.Time        `json:"expires_at"`
}

// String never shows the value or refresh token.
func (in SecretInput) String() string {
	return fmt.Sprintf("SecretInput{name=%q scope=%s}", in.Name, in.Scope)
}

// Format never shows the value or refresh token, whatever the verb (%#v
// would otherwise print every field).
func (in SecretInput) Format(f fmt.State, _ rune) { io.WriteString(f, in.String()) }

// LogValue never shows the value or refresh token.
func (in SecretInput) LogValue() slog.Value { return slog.StringValue(in.String()) }

// UpsertResult is what UpsertSecret did.
type UpsertResult struct {
	Secret  Secret
	Created bool
	// Binding is set when the upsert also bound the secret to a resource.
	Binding *Binding
}

func (in *SecretInput) check() error {
	if !ValidName(in.Name) {
		return invalid("name", "must match [A-Za-z0-9_.-]{1,128}")
	}
	if in.Value == "" {
		return invalid("value", "required")
	}
	if len(in.Value) > MaxValueLen || len(in.RefreshToken) > MaxValueLen {
		return invalid("value", "at most %d bytes", MaxValueLen)
	}
	if in.Type == "" {
		in.Type = "generic"
	}
	if !slices.Contains(SecretTypes, in.Type) {
		return invalid("type", "unknown type %q (want one of %v)", in.Type, SecretTypes)
	}
	if in.Scope == "" {
		return invalid("scope", "required (one of %v)", Scopes)
	}
	if !in.Scope.Valid() {
		return invalid("scope", "unknown scope %q (want one of %v)", in.Scope, Scopes)
	}
	for field, v := range map[string]string{"owner_user_id": in.OwnerUserID, "workspace_id": in.WorkspaceID, "external_user_id": in.ExternalUserID, "external_workspace_id": in.ExternalWorkspaceID, "resource_id": in.ResourceID} {
		if !validExternalID(v) {
			return invalid(field, idRule, MaxIDLen)
		}
	}
	if in.ResourceID != "" && in.ResourceType == "" {
		in.ResourceType = ResourceSandbox
	}
	if in.ResourceType != "" && !in.ResourceType.Valid() {
		return invalid("resource_type", "unknown resource type %q (want sandbox or computer)", in.ResourceType)
	}
	owner := scopeOwner(in.Scope, in.OwnerUserID, in.ExternalUserID, in.ExternalWorkspaceID, in.WorkspaceID, in.ResourceType, in.ResourceID)
	if in.Scope != ScopeTenant && owner == "" {
		field := map[Scope]string{ScopeUser: "owner_user_id", ScopeExternalUser: "external_user_id", ScopeExternalWorkspace: "external_workspace_id", ScopeWorkspace: "workspace_id", ScopeResource: "resource_id"}[in.Scope]
		return invalid(field, "required for scope %s", in.Scope)
	}
	if in.ExposeAsEnv != "" && !ValidEnvName(in.ExposeAsEnv) {
		return invalid("expose_as_env", "must be an environment variable name ([A-Za-z_][A-Za-z0-9_]*)")
	}
	if !validPlaceholderPrefix(in.PlaceholderPrefix) {
		return invalid("placeholder_prefix", "at most %d characters of [A-Za-z0-9_.-]", MaxPlaceholderPrefix)
	}
	var err error
	if in.AllowedHosts, err = normalizeSecretHosts(in.AllowedHosts); err != nil {
		return err
	}
	if in.SubstituteIn, err = normalizeLocations(in.SubstituteIn); err != nil {
		return err
	}
	return checkMetadata("metadata", in.Metadata)
}

// txCheckSecretTarget checks what a checked input refers to in the
// tenant: the tenant allows its scope and its allowed_hosts, its resource
// exists and is of its type.
func txCheckSecretTarget(tx storage.Tx, tenantID string, in *SecretInput) error {
	t, err := txTenant(tx, tenantID)
	if err != nil {
		return err
	}
	if err := checkAnyHost(&t, in.AllowedHosts); err != nil {
		return err
	}
	if in.Scope == ScopeExternalUser && !t.Settings.AllowEndUserCredentials {
		return forbidden("scope", "this tenant does not allow end-user credentials (allow_end_user_credentials is off)")
	}
	if in.ResourceID != "" {
		sbx, err := txSandbox(tx, tenantID, in.ResourceID)
		if err != nil {
			// Not found, as for any other id of another tenant: ids do not leak.
			return notFound("resource_id", "no %s %q in this tenant", in.ResourceType, in.ResourceID)
		}
		if sbx.ResourceType != in.ResourceType {
			return invalid("resource_type", "%q is a %s, not a %s", in.ResourceID, sbx.ResourceType, in.ResourceType)
		}
	}
	return nil
}

// CheckSecretInput answers what UpsertSecret would refuse in (fields,
// the tenant's settings, its resource), without storing anything: for a
// caller that stores the secret later (an OAuth connect, stored after the
// user's consent). An empty Value counts as given.
func (s *Store) CheckSecretInput(tenantID string, in SecretInput) error {
	if in.Value == "" {
		in.Value = "-"
	}
	if err := s.checkInput(&in); err != nil {
		return err
	}
	return s.view(func(tx storage.Tx) error { return txCheckSecretTarget(tx, tenantID, &in) })
}

// ReservedMetadataPrefix starts the metadata keys only egressd's own OAuth
// connect may set (oauth_provider, oauth_client): refresh trusts them to
// pick the app whose credentials it sends.
const ReservedMetadataPrefix = "oauth_"

// WithReservedMetadata returns a Store on the same file whose writes may set
// reserved metadata keys. Only the oauth package uses it.
func (s *Store) WithReservedMetadata() *Store {
	c := *s
	c.reserved = true
	return &c
}

// checkInput validates in, and refuses reserved metadata keys unless this
// Store may write them.
func (s *Store) checkInput(in *SecretInput) error {
	if err := in.check(); err != nil {
		return err
	}
	if !s.reserved {
		for k := range in.Metadata {
			if strings.HasPrefix(strings.ToLower(k), ReservedMetadataPrefix) {
				return invalid("metadata", "keys starting with %q are reserved for egressd's OAuth connect", ReservedMetadataPrefix)
			}
		}
	}
	return nil
}

// UpsertSecret creates the secret, or replaces value and metadata of the one
// with the same (scope, scope owner, name), raising its version. A disabled
// secret stays disabled. With a resource_id and expose_as_env (or with scope
// resource) it also binds the secret to that resource.
func (s *Store) UpsertSecret(tenantID string, in SecretInput) (UpsertResult, error) {
	if err := s.checkInput(&in); err != nil {
		return UpsertResult{}, err
	}
	var res UpsertResult
	err := s.update(tenantID, func(tx storage.Tx) error {
		res = UpsertResult{}
		if err := txCheckSecretTarget(tx, tenantID, &in); err != nil {
			return err
		}
		bind := in.ResourceID != "" && (in.ExposeAsEnv != "" || in.Scope == ScopeResource)
		now := s.stamp()
		owner := scopeOwner(in.Scope, in.OwnerUserID, in.ExternalUserID, in.ExternalWorkspaceID, in.WorkspaceID, in.ResourceType, in.ResourceID)
		idxKey := key(tenantID, string(in.Scope), owner, in.Name)
		var row storedSecret
		var old *Secret // the row's indexed fields before this write
		if id := tx.Bucket(bSecretIdx).Get(idxKey); id != nil {
			if _, err := getJSON(tx.Bucket(bSecrets), key(tenantID, string(id)), &row); err != nil {
				return err
			}
			was := row.Secret
			old = &was
			row.Version++
		} else {
			res.Created = true
			row = storedSecret{Secret: Secret{ID: newID(prefixSecret), TenantID: tenantID, Version: 1, CreatedAt: now}}
		}
		sec := &row.Secret
		sec.Name, sec.Type, sec.Scope = in.Name, in.Type, in.Scope
		sec.OwnerUserID, sec.WorkspaceID = in.OwnerUserID, in.WorkspaceID
		sec.ExternalUserID, sec.ExternalWorkspaceID = in.ExternalUserID, in.ExternalWorkspaceID
		sec.ResourceID, sec.ResourceType = "", ""
		if in.Scope == ScopeResource {
			sec.ResourceID, sec.ResourceType = in.ResourceID, in.ResourceType
		}
		sec.ExposeAsEnv, sec.AllowedHosts, sec.SubstituteIn = in.ExposeAsEnv, in.AllowedHosts, in.SubstituteIn
		sec.PlaceholderPrefix, sec.Metadata, sec.ExpiresAt = in.PlaceholderPrefix, in.Metadata, in.ExpiresAt
		sec.UpdatedAt = now
		if err := s.sealInto(tx, &row, []byte(in.Value), []byte(in.RefreshToken)); err != nil {
			return err
		}
		if err := putJSON(tx.Bucket(bSecrets), key(tenantID, sec.ID), &row); err != nil {
			return err
		}
		if err := tx.Bucket(bSecretIdx).Put(idxKey, []byte(sec.ID)); err != nil {
			return err
		}
		if err := txIndexSecret(tx, old, sec); err != nil {
			return err
		}
		res.Secret = row.Secret
		ar := secretAudit(sec)
		if bind {
			b, err := s.txBind(tx, tenantID, sec.ID, in.ResourceID, in.ResourceType, in.ExposeAsEnv)
			if err != nil {
				return err
			}
			res.Binding = &b
			ar.Details["binding_id"], ar.Details["resource_id"] = b.ID, b.ResourceID
		}
		action := ActionSecretUpdated
		if res.Created {
			action = ActionSecretCreated
		}
		return s.txAudit(tx, action, ar)
	})
	return res, err
}

// sealInto seals value and refresh into row with the vault's current
// master key as tx sees it (sealKey).
func (s *Store) sealInto(tx storage.Tx, row *storedSecret, value, refresh []byte) error {
	k, err := s.sealKey(tx)
	if err != nil {
		return err
	}
	v, err := k.seal(value, valueAD(row.TenantID, row.ID, row.Version, "value"))
	if err != nil {
		return err
	}
	row.Value, row.Refresh, row.HasRefreshToken = v, nil, false
	if len(refresh) > 0 {
		r, err := k.seal(refresh, valueAD(row.TenantID, row.ID, row.Version, "refresh_token"))
		if err != nil {
			return err
		}
		row.Refresh, row.HasRefreshToken = r, true
	}
	return nil
}

// RotateInput is a secret's new value.
type RotateInput struct {
	Value        string     `json:"value"`
	RefreshToken string     `json:"refresh_token"`
	ExpiresAt    *time.Time `json:"expires_at"`
}

// String never shows the value or refresh token.
func (in RotateInput) String() string { return "RotateInput{[redacted]}" }

// Format never shows the value or refresh token, whatever the verb.
func (in RotateInput) Format(f fmt.State, _ rune) { io.WriteString(f, in.String()) }

// LogValue never shows the value or refresh token.
func (in RotateInput) LogValue() slog.Value { return slog.StringValue(in.String()) }

// RotateSecret stores a new value as version + 1. The placeholders that
// sandboxes hold stay the same. Without a new refresh token the current one
// is kept (OAuth providers often issue none on refresh), sealed again for
// the new version; expires_at is replaced.
func (s *Store) RotateSecret(tenantID, id string, in RotateInput) (Secret, error) {
	if in.Value == "" {
		return Secret{}, invalid("value", "required")
	}
	if len(in.Value) > MaxValueLen || len(in.RefreshToken) > MaxValueLen {
		return Secret{}, invalid("value", "at most %d bytes", MaxValueLen)
	}
	return s.modifySecret(tenantID, id, ActionSecretRotated, func(tx storage.Tx, row *storedSecret) error {
		refresh := []byte(in.RefreshToken)
		if len(refresh) == 0 && row.Refresh != nil {
			old, err := s.keys.open(row.Refresh, valueAD(row.TenantID, row.ID, row.Version, "refresh_token"))
			if err != nil {
				return fmt.Errorf("secret %q version %d refresh token: %w", id, row.Version, err)
			}
			defer clear(old)
			refresh = old
		}
		row.Version++
		row.ExpiresAt = in.ExpiresAt
		return s.sealInto(tx, row, []byte(in.Value), refresh)
	})
}

// SetDisabled revokes (true) or restores (false) a secret. A disabled secret
// counts as absent in the resolver's walk.
func (s *Store) SetDisabled(tenantID, id string, disabled bool) (Secret, error) {
	action := ActionSecretEnabled
	if disabled {
		action = ActionSecretDisabled
	}
	return s.modifySecret(tenantID, id, action, func(_ storage.Tx, row *storedSecret) error {
		row.Disabled = disabled
		return nil
	})
}

func (s *Store) modifySecret(tenantID, id, action string, fn func(storage.Tx, *storedSecret) error) (Secret, error) {
	var out Secret
	err := s.update(tenantID, func(tx storage.Tx) error {
		row, err := txSecret(tx, tenantID, id)
		if err != nil {
			return err
		}
		if err := fn(tx, row); err != nil {
			return err
		}
		row.UpdatedAt = s.stamp()
		out = row.Secret
		if err := putJSON(tx.Bucket(bSecrets), key(tenantID, id), row); err != nil {
			return err
		}
		return s.txAudit(tx, action, secretAudit(&row.Secret))
	})
	return out, err
}

// DeleteSecret deletes a secret and its bindings.
func (s *Store) DeleteSecret(tenantID, id string) error {
	return s.update(tenantID, func(tx storage.Tx) error {
		row, err := txSecret(tx, tenantID, id)
		if err != nil {
			return err
		}
		n, err := txDeleteSecret(tx, row)
		if err != nil {
			return err
		}
		ar := secretAudit(&row.Secret)
		ar.Details["bindings_deleted"] = itoa(n)
		return s.txAudit(tx, ActionSecretDeleted, ar)
	})
}

// txDeleteSecret deletes a secret and its bindings, and says how many
// bindings went with it.
func txDeleteSecret(tx storage.Tx, row *storedSecret) (int, error) {
	tid := row.TenantID
	var bids []string
	p := prefix(tid, row.ID)
	c := tx.Bucket(bBindBySecret).Cursor()
	for k, _ := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, _ = c.Next() {
		bids = append(bids, string(k[len(p):]))
	}
	for _, bid := range bids {
		if _, err := txDeleteBinding(tx, tid, bid); err != nil {
			return 0, err
		}
	}
	if err := tx.Bucket(bSecretIdx).Delete(key(tid, string(row.Scope), row.ScopeOwner(), row.Name)); err != nil {
		return 0, err
	}
	if err := txUnindexSecret(tx, &row.Secret); err != nil {
		return 0, err
	}
	return len(bids), tx.Bucket(bSecrets).Delete(key(tid, row.ID))
}

// Secret returns one secret's metadata.
func (s *Store) Secret(tenantID, id string) (Secret, error) {
	var out Secret
	err := s.view(func(tx storage.Tx) error {
		row, err := txSecret(tx, tenantID, id)
		if err == nil {
			out = row.Secret
		}
		return err
	})
	return out, err
}

// SecretFilter narrows ListSecrets and ListSecretsPage; empty fields match
// everything. Each field is served from an index (listindex.go).
type SecretFilter struct {
	// ResourceID selects the secrets bound to that resource (of
	// ResourceType, if set); ResourceType alone, the secrets bound to, or
	// scoped to, any resource of that type.
	ResourceID          string
	ResourceType        ResourceType
	Scope               Scope
	Type                string
	WorkspaceID         string
	OwnerUserID         string
	ExternalUserID      string
	ExternalWorkspaceID string
	Name                string
	// IDs, when not nil, keeps only these secrets.
	IDs map[string]bool
}

func (f *SecretFilter) match(s *Secret) bool {
	return (f.Scope == "" || s.Scope == f.Scope) &&
		(f.Type == "" || s.Type == f.Type) &&
		(f.WorkspaceID == "" || s.WorkspaceID == f.WorkspaceID) &&
		(f.OwnerUserID == "" || s.OwnerUserID == f.OwnerUserID) &&
		(f.ExternalUserID == "" || s.ExternalUserID == f.ExternalUserID) &&
		(f.ExternalWorkspaceID == "" || s.ExternalWorkspaceID == f.ExternalWorkspaceID) &&
		(f.Name == "" || s.Name == f.Name) &&
		(f.IDs == nil || f.IDs[s.ID])
}

func (f *SecretFilter) check() error {
	if f.ResourceType != "" && !f.ResourceType.Valid() {
		return invalid("resource_type", "unknown resource type %q (want sandbox or computer)", f.ResourceType)
	}
	if f.Scope != "" && !f.Scope.Valid() {
		return invalid("scope", "unknown scope %q (want one of %v)", f.Scope, Scopes)
	}
	if f.Type != "" && !slices.Contains(SecretTypes, f.Type) {
		return invalid("type", "unknown type %q (want one of %v)", f.Type, SecretTypes)
	}
	if f.Name != "" && !ValidName(f.Name) {
		return invalid("name", "must match [A-Za-z0-9_.-]{1,128}")
	}
	return checkFilterIDs(
		fieldValue{"resource_id", f.ResourceID},
		fieldValue{fieldWorkspaceID, f.WorkspaceID},
		fieldValue{fieldOwnerUserID, f.OwnerUserID},
		fieldValue{fieldExternalUserID, f.ExternalUserID},
		fieldValue{fieldExternalWorkspaceID, f.ExternalWorkspaceID},
	)
}

// ListSecrets lists every secret of a tenant that f matches, in id order.
// For egressd's own callers; the API pages (ListSecretsPage).
func (s *Store) ListSecrets(tenantID string, f SecretFilter) ([]Secret, error) {
	out, _, err := s.listSecrets(tenantID, f, Page{Limit: -1})
	return out, err
}

// ListSecretsPage returns a page of the tenant's secrets that f matches, in
// id order, and the cursor of the next page ("" after the last).
func (s *Store) ListSecretsPage(tenantID string, f SecretFilter, pg Page) ([]Secret, string, error) {
	if pg.Limit < 0 {
		return nil, "", invalid("limit", "1 to %d (default %d)", MaxListLimit, DefaultListLimit)
	}
	return s.listSecrets(tenantID, f, pg)
}

func (s *Store) listSecrets(tenantID string, f SecretFilter, pg Page) ([]Secret, string, error) {
	if err := f.check(); err != nil {
		return nil, "", err
	}
	q := &listQuery[Secret]{
		kind: listSecrets, tenant: tenantID, rows: bSecrets,
		filter: filterKey(f.ResourceID, string(f.ResourceType), string(f.Scope), f.Type, f.WorkspaceID, f.OwnerUserID,
			f.ExternalUserID, f.ExternalWorkspaceID, f.Name, idSetKey(f.IDs)),
		sources: func(tx storage.Tx) ([]postings, error) { return f.sources(tx, tenantID) },
		decode: func(v []byte) (Secret, bool, error) {
			// The metadata only: the sealed values are not decoded.
			var sec Secret
			if err := unmarshal(v, &sec); err != nil {
				return sec, false, err
			}
			return sec, sec.TenantID == tenantID && f.match(&sec), nil
		},
	}
	return runList(s, q, pg)
}

// sources are the id lists of f's filters: the index of each field set,
// the secrets bound to the resource, the ids given.
func (f *SecretFilter) sources(tx storage.Tx, tenantID string) ([]postings, error) {
	var srcs []postings
	if f.ResourceID != "" {
		// The bindings of one resource, few: their secrets, sorted.
		bs, err := txBindingsOf(tx, tenantID, f.ResourceID)
		if err != nil {
			return nil, err
		}
		var ids [][]byte
		for _, b := range bs {
			if f.ResourceType == "" || b.ResourceType == f.ResourceType {
				ids = append(ids, []byte(b.SecretID))
			}
		}
		srcs = append(srcs, newSortedPostings(ids))
	} else if f.ResourceType != "" {
		srcs = append(srcs, newIndexPostings(tx, bSecretFields, fieldPrefix(tenantID, fieldResourceType, string(f.ResourceType))))
	}
	for _, fv := range nonEmpty(
		fieldValue{fieldExternalUserID, f.ExternalUserID},
		fieldValue{fieldOwnerUserID, f.OwnerUserID},
		fieldValue{fieldName, f.Name},
		fieldValue{fieldExternalWorkspaceID, f.ExternalWorkspaceID},
		fieldValue{fieldWorkspaceID, f.WorkspaceID},
		fieldValue{fieldType, f.Type},
		fieldValue{fieldScope, string(f.Scope)},
	) {
		srcs = append(srcs, newIndexPostings(tx, bSecretFields, fieldPrefix(tenantID, fv.field, fv.value)))
	}
	if f.IDs != nil {
		ids := make([][]byte, 0, len(f.IDs))
		for id, ok := range f.IDs {
			if ok {
				ids = append(ids, []byte(id))
			}
		}
		srcs = append(srcs, newSortedPostings(ids))
	}
	return srcs, nil
}

func txTenant(tx storage.Tx, id string) (Tenant, error) {
	var t Tenant
	ok, err := getJSON(tx.Bucket(bTenants), []byte(id), &t)
	if err == nil && !ok {
		err = fmt.Errorf("tenant: %w", ErrNotFound)
	}
	return t, err
}

func txSecret(tx storage.Tx, tenantID, id string) (*storedSecret, error) {
	var row storedSecret
	ok, err := getJSON(tx.Bucket(bSecrets), key(tenantID, id), &row)
	if err != nil {
		return nil, err
	}
	if !ok || row.TenantID != tenantID {
		return nil, fmt.Errorf("secret %q: %w", id, ErrNotFound)
	}
	return &row, nil
}
