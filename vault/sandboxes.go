package vault

import (
	"bytes"
	"crypto/subtle"
	"fmt"
	"strings"
	"time"

	"github.com/egressd/egressd/audit"
	"github.com/egressd/egressd/vault/storage"
)

// storedSandbox is a sandbox's row: the record and its proxy token's hash.
type storedSandbox struct {
	Sandbox
	TokenHash []byte `json:"token_hash"`
}

// SandboxInput registers a sandbox or computer with its attribution.
type SandboxInput struct {
	ResourceType        ResourceType      `json:"resource_type"`
	Name                string            `json:"name"`
	OwnerUserID         string            `json:"owner_user_id"`
	WorkspaceID         string            `json:"workspace_id"`
	ExternalUserID      string            `json:"external_user_id"`
	ExternalWorkspaceID string            `json:"external_workspace_id"`
	ExternalProjectID   string            `json:"external_project_id"`
	Metadata            map[string]string `json:"metadata"`
	// TokenTTL, if set, is how long the proxy token works; the proxy then
	// answers 407 until a token is re-issued.
	TokenTTL TTL `json:"token_ttl"`
	// SourceAddrs are the addresses the sandbox's connections come from,
	// for the transparent listener (NormalizeSourceAddrs says what is
	// taken); none: it can use the proxy URL only.
	SourceAddrs []string `json:"source_addrs"`
}

// CreateSandbox registers a sandbox and returns it with its proxy token,
// which is stored only as a hash and cannot be shown again.
func (s *Store) CreateSandbox(tenantID string, in SandboxInput) (Sandbox, string, error) {
	if in.ResourceType == "" {
		in.ResourceType = ResourceSandbox
	}
	if !in.ResourceType.Valid() {
		return Sandbox{}, "", invalid("resource_type", "unknown resource type %q (want sandbox or computer)", in.ResourceType)
	}
	for field, v := range map[string]string{"name": in.Name, "owner_user_id": in.OwnerUserID, "workspace_id": in.WorkspaceID, "external_user_id": in.ExternalUserID, "external_workspace_id": in.ExternalWorkspaceID, "external_project_id": in.ExternalProjectID} {
		if !validExternalID(v) {
			return Sandbox{}, "", invalid(field, idRule, MaxIDLen)
		}
	}
	if err := checkMetadata("metadata", in.Metadata); err != nil {
		return Sandbox{}, "", err
	}
	if err := checkTokenTTL(in.TokenTTL); err != nil {
		return Sandbox{}, "", err
	}
	addrs, err := NormalizeSourceAddrs(in.SourceAddrs)
	if err != nil {
		return Sandbox{}, "", err
	}
	idPrefix := prefixSandbox
	if in.ResourceType == ResourceComputer {
		idPrefix = prefixComputer
	}
	now := s.stamp()
	row := storedSandbox{
		Sandbox: Sandbox{
			ID: newID(idPrefix), TenantID: tenantID, ResourceType: in.ResourceType, Name: in.Name,
			OwnerUserID: in.OwnerUserID, WorkspaceID: in.WorkspaceID,
			ExternalUserID: in.ExternalUserID, ExternalWorkspaceID: in.ExternalWorkspaceID, ExternalProjectID: in.ExternalProjectID,
			Metadata: in.Metadata, CreatedAt: now, SourceAddrs: addrs,
		},
	}
	token := row.issueToken(now, in.TokenTTL)
	err = s.update(tenantID, func(tx storage.Tx) error {
		if _, err := txTenant(tx, tenantID); err != nil {
			return err
		}
		if err := putJSON(tx.Bucket(bSandboxes), key(tenantID, row.ID), &row); err != nil {
			return err
		}
		if err := tx.Bucket(bSandboxOwner).Put([]byte(row.ID), []byte(tenantID)); err != nil {
			return err
		}
		if err := txIndexSandbox(tx, &row.Sandbox, false); err != nil {
			return err
		}
		if err := txClaimSourceAddrs(tx, &row.Sandbox, nil); err != nil {
			return err
		}
		ar := tokenAudit(&row.Sandbox)
		if len(row.SourceAddrs) > 0 {
			ar.Details["source_addrs"] = strings.Join(row.SourceAddrs, ",")
		}
		return s.txAudit(tx, ActionSandboxCreated, ar)
	})
	if err != nil {
		return Sandbox{}, "", err
	}
	return row.Sandbox, token, nil
}

// issueToken gives the sandbox a new proxy token, valid for ttl (zero:
// no expiry) from now, and returns it; only its hash is kept.
func (row *storedSandbox) issueToken(now time.Time, ttl TTL) string {
	token := newToken(tokenProxy)
	row.TokenHash = tokenHash(token)
	row.TokenIssuedAt = now
	row.TokenExpiresAt = nil
	if ttl != 0 {
		exp := now.Add(time.Duration(ttl))
		row.TokenExpiresAt = &exp
	}
	return token
}

// tokenAudit is a sandbox's admin row with its token's lifetime.
func tokenAudit(sbx *Sandbox) audit.Row {
	r := sandboxAudit(sbx)
	if sbx.TokenExpiresAt != nil {
		r.Details["token_expires_at"] = sbx.TokenExpiresAt.Format(time.RFC3339)
	}
	return r
}

// ReissueSandboxToken gives a sandbox a new proxy token, valid for ttl
// (zero: no expiry), and returns the sandbox with it. The old token stops
// at once: new connections are refused, and connections it opened are
// refused at their next request. The token is shown only in this answer.
func (s *Store) ReissueSandboxToken(tenantID, id string, ttl TTL) (Sandbox, string, error) {
	if err := checkTokenTTL(ttl); err != nil {
		return Sandbox{}, "", err
	}
	var (
		row   storedSandbox
		token string
	)
	err := s.update(tenantID, func(tx storage.Tx) error {
		ok, err := getJSON(tx.Bucket(bSandboxes), key(tenantID, id), &row)
		if err != nil {
			return err
		}
		if !ok || row.TenantID != tenantID {
			return fmt.Errorf("sandbox %q: %w", id, ErrNotFound)
		}
		token = row.issueToken(s.stamp(), ttl)
		if err := putJSON(tx.Bucket(bSandboxes), key(tenantID, row.ID), &row); err != nil {
			return err
		}
		return s.txAudit(tx, ActionSandboxToken, tokenAudit(&row.Sandbox))
	})
	if err != nil {
		return Sandbox{}, "", err
	}
	return row.Sandbox, token, nil
}

// SandboxUpdate changes what may change of a sandbox after its creation
// (its attribution never does). A nil field is left as it is.
type SandboxUpdate struct {
	// SourceAddrs, when set, replaces the sandbox's source_addrs (an
	// empty list removes them all).
	SourceAddrs *[]string `json:"source_addrs"`
}

// UpdateSandbox applies in to a sandbox and returns it as stored. Source
// addresses another sandbox claims are refused with ErrConflict, and the
// sandbox is then left as it was.
func (s *Store) UpdateSandbox(tenantID, id string, in SandboxUpdate) (Sandbox, error) {
	if in.SourceAddrs == nil {
		return Sandbox{}, invalid("", "nothing to update: give source_addrs")
	}
	addrs, err := NormalizeSourceAddrs(*in.SourceAddrs)
	if err != nil {
		return Sandbox{}, err
	}
	var row storedSandbox
	err = s.update(tenantID, func(tx storage.Tx) error {
		ok, err := getJSON(tx.Bucket(bSandboxes), key(tenantID, id), &row)
		if err != nil {
			return err
		}
		if !ok || row.TenantID != tenantID {
			return fmt.Errorf("sandbox %q: %w", id, ErrNotFound)
		}
		old := row.SourceAddrs
		row.SourceAddrs = addrs
		if err := txClaimSourceAddrs(tx, &row.Sandbox, old); err != nil {
			return err
		}
		if err := putJSON(tx.Bucket(bSandboxes), key(tenantID, row.ID), &row); err != nil {
			return err
		}
		ar := sandboxAudit(&row.Sandbox)
		ar.Details["source_addrs"] = strings.Join(addrs, ",")
		return s.txAudit(tx, ActionSandboxUpdated, ar)
	})
	if err != nil {
		return Sandbox{}, err
	}
	return row.Sandbox, nil
}

// Sandbox returns one sandbox of the tenant.
func (s *Store) Sandbox(tenantID, id string) (Sandbox, error) {
	var out Sandbox
	err := s.view(func(tx storage.Tx) error {
		sbx, err := txSandbox(tx, tenantID, id)
		out = sbx
		return err
	})
	return out, err
}

// SandboxFilter narrows ListSandboxes and ListSandboxesPage; empty fields
// match everything. Each field is served from an index.
type SandboxFilter struct {
	ResourceType        ResourceType
	OwnerUserID         string
	WorkspaceID         string
	ExternalUserID      string
	ExternalWorkspaceID string
	ExternalProjectID   string
}

func (f *SandboxFilter) fields() []fieldValue {
	return nonEmpty(
		fieldValue{fieldExternalUserID, f.ExternalUserID},
		fieldValue{fieldOwnerUserID, f.OwnerUserID},
		fieldValue{fieldExternalProjectID, f.ExternalProjectID},
		fieldValue{fieldExternalWorkspaceID, f.ExternalWorkspaceID},
		fieldValue{fieldWorkspaceID, f.WorkspaceID},
		fieldValue{fieldResourceType, string(f.ResourceType)},
	)
}

func (f *SandboxFilter) match(x *Sandbox) bool {
	return (f.ResourceType == "" || x.ResourceType == f.ResourceType) &&
		(f.OwnerUserID == "" || x.OwnerUserID == f.OwnerUserID) &&
		(f.WorkspaceID == "" || x.WorkspaceID == f.WorkspaceID) &&
		(f.ExternalUserID == "" || x.ExternalUserID == f.ExternalUserID) &&
		(f.ExternalWorkspaceID == "" || x.ExternalWorkspaceID == f.ExternalWorkspaceID) &&
		(f.ExternalProjectID == "" || x.ExternalProjectID == f.ExternalProjectID)
}

func (f *SandboxFilter) check() error {
	if f.ResourceType != "" && !f.ResourceType.Valid() {
		return invalid("resource_type", "unknown resource type %q (want sandbox or computer)", f.ResourceType)
	}
	return checkFilterIDs(f.fields()...)
}

// ListSandboxes lists every sandbox and computer of a tenant that f
// matches, in id order. For egressd's own callers; the API pages
// (ListSandboxesPage).
func (s *Store) ListSandboxes(tenantID string, f SandboxFilter) ([]Sandbox, error) {
	out, _, err := s.listSandboxes(tenantID, f, Page{Limit: -1})
	return out, err
}

// ListSandboxesPage returns a page of the tenant's sandboxes and computers
// that f matches, in id order, and the cursor of the next page ("" after
// the last).
func (s *Store) ListSandboxesPage(tenantID string, f SandboxFilter, pg Page) ([]Sandbox, string, error) {
	if pg.Limit < 0 {
		return nil, "", invalid("limit", "1 to %d (default %d)", MaxListLimit, DefaultListLimit)
	}
	return s.listSandboxes(tenantID, f, pg)
}

func (s *Store) listSandboxes(tenantID string, f SandboxFilter, pg Page) ([]Sandbox, string, error) {
	if err := f.check(); err != nil {
		return nil, "", err
	}
	q := &listQuery[Sandbox]{
		kind: listSandboxes, tenant: tenantID, rows: bSandboxes,
		filter: filterKey(string(f.ResourceType), f.OwnerUserID, f.WorkspaceID, f.ExternalUserID, f.ExternalWorkspaceID, f.ExternalProjectID),
		sources: func(tx storage.Tx) ([]postings, error) {
			var srcs []postings
			for _, fv := range f.fields() {
				srcs = append(srcs, newIndexPostings(tx, bSandboxFields, fieldPrefix(tenantID, fv.field, fv.value)))
			}
			return srcs, nil
		},
		decode: func(v []byte) (Sandbox, bool, error) {
			// The record only: the token's hash is not decoded.
			var x Sandbox
			if err := unmarshal(v, &x); err != nil {
				return x, false, err
			}
			return x, x.TenantID == tenantID && f.match(&x), nil
		},
	}
	return runList(s, q, pg)
}

// DeleteSandbox deletes a sandbox, its bindings, the secrets scoped to it
// and its placeholders. Its proxy token stops working at once.
func (s *Store) DeleteSandbox(tenantID, id string) error {
	return s.update(tenantID, func(tx storage.Tx) error {
		sbx, err := txSandbox(tx, tenantID, id)
		if err != nil {
			return err
		}
		bs, err := txBindingsOf(tx, tenantID, id)
		if err != nil {
			return err
		}
		var deleted []string // secrets scoped to the sandbox
		for _, b := range bs {
			row, err := txSecret(tx, tenantID, b.SecretID)
			if err != nil {
				return err
			}
			if row.Scope == ScopeResource && row.ResourceID == id {
				_, err = txDeleteSecret(tx, row)
				deleted = append(deleted, row.ID)
			} else {
				_, err = txDeleteBinding(tx, tenantID, b.ID)
			}
			if err != nil {
				return err
			}
		}
		// Secrets scoped to the sandbox whose binding to it was deleted
		// are found through the name index.
		var scoped []string
		ip := prefix(tenantID, string(ScopeResource), scopeOwner(ScopeResource, "", "", "", "", sbx.ResourceType, sbx.ID))
		ic := tx.Bucket(bSecretIdx).Cursor()
		for k, v := ic.Seek(ip); k != nil && bytes.HasPrefix(k, ip); k, v = ic.Next() {
			scoped = append(scoped, string(v))
		}
		for _, sid := range scoped {
			row, err := txSecret(tx, tenantID, sid)
			if err != nil {
				return err
			}
			if _, err := txDeleteSecret(tx, row); err != nil {
				return err
			}
			deleted = append(deleted, row.ID)
		}
		p := prefix(id)
		var keys [][]byte
		c := tx.Bucket(bSandboxPH).Cursor()
		for k, v := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
			keys = append(keys, bytes.Clone(k))
			if core := PlaceholderCore(string(v)); core != "" {
				if err := tx.Bucket(bPlaceholders).Delete([]byte(core)); err != nil {
					return err
				}
			}
		}
		for _, k := range keys {
			if err := tx.Bucket(bSandboxPH).Delete(k); err != nil {
				return err
			}
		}
		if err := tx.Bucket(bSandboxOwner).Delete([]byte(sbx.ID)); err != nil {
			return err
		}
		if err := tx.Bucket(bSandboxes).Delete(key(tenantID, sbx.ID)); err != nil {
			return err
		}
		if err := txIndexSandbox(tx, &sbx, true); err != nil {
			return err
		}
		released := sbx
		released.SourceAddrs = nil
		if err := txClaimSourceAddrs(tx, &released, sbx.SourceAddrs); err != nil {
			return err
		}
		// One row for the sandbox and all that went with it.
		ar := sandboxAudit(&sbx)
		ar.Details["bindings_deleted"] = itoa(len(bs))
		if len(deleted) > 0 {
			ar.Details["secrets_deleted"] = strings.Join(deleted, ",")
		}
		return s.txAudit(tx, ActionSandboxDeleted, ar)
	})
}

// AuthenticateSandbox checks a proxy token in constant time and returns the
// sandbox it belongs to. Any failure is ErrUnauthenticated; a right token
// past its token_ttl is ErrTokenExpired (which wraps it).
func (s *Store) AuthenticateSandbox(id, token string) (Sandbox, error) {
	var row storedSandbox
	err := s.view(func(tx storage.Tx) error {
		tid := tx.Bucket(bSandboxOwner).Get([]byte(id))
		if tid == nil {
			return ErrUnauthenticated
		}
		ok, err := getJSON(tx.Bucket(bSandboxes), key(string(tid), id), &row)
		if err != nil {
			return err
		}
		if !ok {
			return ErrUnauthenticated
		}
		return nil
	})
	if err != nil {
		// Hash anyway so a miss costs what a hit does.
		subtle.ConstantTimeCompare(tokenHash(token), tokenHash(""))
		return Sandbox{}, err
	}
	if subtle.ConstantTimeCompare(tokenHash(token), row.TokenHash) != 1 {
		return Sandbox{}, ErrUnauthenticated
	}
	if !row.TokenLive(s.now()) {
		return Sandbox{}, ErrTokenExpired
	}
	return row.Sandbox, nil
}

func txSandbox(tx storage.Tx, tenantID, id string) (Sandbox, error) {
	var row storedSandbox
	ok, err := getJSON(tx.Bucket(bSandboxes), key(tenantID, id), &row)
	if err != nil {
		return Sandbox{}, err
	}
	if !ok || row.TenantID != tenantID {
		return Sandbox{}, fmt.Errorf("sandbox %q: %w", id, ErrNotFound)
	}
	return row.Sandbox, nil
}
