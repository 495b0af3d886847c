package vault

import (
	"fmt"
	"strings"
	"time"

	"github.com/egressd/egressd/audit"
	"github.com/egressd/egressd/vault/storage"
)

var metaOperator = []byte("operator_key")

// tenantNameRule is how a refusal by validTenantName reads.
const tenantNameRule = "tenant name must be 1 to %d bytes of UTF-8, without control, format (bidirectional, zero-width) or line separator characters"

// validTenantName reports whether name (trimmed) can name a tenant.
func validTenantName(name string) bool {
	return name != "" && len(name) <= MaxTenantName && validText(name)
}

// EnsureTenant returns the tenant named name, creating it if absent.
func (s *Store) EnsureTenant(name string) (t Tenant, created bool, err error) {
	name = strings.TrimSpace(name)
	if !validTenantName(name) {
		return Tenant{}, false, invalid("name", tenantNameRule, MaxTenantName)
	}
	err = s.backend.Update(func(tx storage.Tx) error {
		if id := tx.Bucket(bTenantNames).Get([]byte(name)); id != nil {
			_, err := getJSON(tx.Bucket(bTenants), id, &t)
			return err
		}
		now := s.stamp()
		t = Tenant{ID: newID(prefixTenant), Name: name, Settings: DefaultSettings(), CreatedAt: now, UpdatedAt: now}
		created = true
		if err := tx.Bucket(bTenantNames).Put([]byte(name), []byte(t.ID)); err != nil {
			return err
		}
		if err := putJSON(tx.Bucket(bTenants), []byte(t.ID), &t); err != nil {
			return err
		}
		if err := s.publish(tx, t.ID); err != nil {
			return err
		}
		return s.txAudit(tx, ActionTenantCreated, audit.Row{TenantID: t.ID})
	})
	if err == nil && created {
		s.changed(t.ID)
	}
	return t, created, err
}

// NewTenant is what a tenant is created with.
type NewTenant struct {
	Name string
	// SourcePrefixes are the addresses its sandboxes may claim
	// (SetSourcePrefixes); none: they may claim none.
	SourcePrefixes []string
}

// CreateTenant creates a tenant and its first admin key, in one
// transaction. A name already in use is a conflict.
func (s *Store) CreateTenant(name string) (Tenant, string, error) {
	return s.CreateTenantWith(NewTenant{Name: name})
}

// CreateTenantWith is CreateTenant with source_prefixes: prefixes that
// overlap another tenant's are a conflict (naming that tenant).
func (s *Store) CreateTenantWith(in NewTenant) (Tenant, string, error) {
	name := strings.TrimSpace(in.Name)
	if !validTenantName(name) {
		return Tenant{}, "", invalid("name", tenantNameRule, MaxTenantName)
	}
	prefixes, err := NormalizeSourcePrefixes(in.SourcePrefixes)
	if err != nil {
		return Tenant{}, "", err
	}
	var t Tenant
	var token string
	err = s.backend.Update(func(tx storage.Tx) error {
		if tx.Bucket(bTenantNames).Get([]byte(name)) != nil {
			return fmt.Errorf("%w: a tenant named %q exists", ErrConflict, name)
		}
		now := s.stamp()
		t = Tenant{ID: newID(prefixTenant), Name: name, Settings: DefaultSettings(), CreatedAt: now, UpdatedAt: now}
		t.Settings.SourcePrefixes = prefixes
		if err := txCheckPrefixesFree(tx, t.ID, ParsePrefixes(prefixes)); err != nil {
			return err
		}
		if err := tx.Bucket(bTenantNames).Put([]byte(name), []byte(t.ID)); err != nil {
			return err
		}
		if err := putJSON(tx.Bucket(bTenants), []byte(t.ID), &t); err != nil {
			return err
		}
		tok, k, err := s.putKey(tx, t.ID, KeyAdmin, "", 0)
		if err != nil {
			return err
		}
		token = tok
		if err := s.publish(tx, t.ID); err != nil {
			return err
		}
		d := map[string]string{"key_id": k.ID}
		if len(prefixes) > 0 {
			d["source_prefixes"] = strings.Join(prefixes, ",")
		}
		return s.txAudit(tx, ActionTenantCreated, audit.Row{TenantID: t.ID, Details: d})
	})
	if err != nil {
		return Tenant{}, "", err
	}
	s.changed(t.ID)
	return t, token, nil
}

// Tenant returns one tenant.
func (s *Store) Tenant(id string) (Tenant, error) {
	var t Tenant
	err := s.view(func(tx storage.Tx) error {
		ok, err := getJSON(tx.Bucket(bTenants), []byte(id), &t)
		if err == nil && !ok {
			err = fmt.Errorf("tenant: %w", ErrNotFound)
		}
		return err
	})
	return t, err
}

// Tenants lists every tenant.
func (s *Store) Tenants() ([]Tenant, error) {
	var out []Tenant
	err := s.view(func(tx storage.Tx) error {
		return tx.Bucket(bTenants).ForEach(func(k, v []byte) error {
			var t Tenant
			if _, err := getJSON(tx.Bucket(bTenants), k, &t); err != nil {
				return err
			}
			out = append(out, t)
			return nil
		})
	})
	return out, err
}

// SettingsPatch changes some of a tenant's settings; nil fields stay.
type SettingsPatch struct {
	AllowEndUserCredentials *bool     `json:"allow_end_user_credentials"`
	CABundlePath            *string   `json:"ca_bundle_path"`
	EgressAllowHosts        *[]string `json:"egress_allow_hosts"`
	EgressDenyHosts         *[]string `json:"egress_deny_hosts"`
	AllowAnyHostSecrets     *bool     `json:"allow_any_host_secrets"`
	SandboxRequestRate      *int      `json:"sandbox_request_rate"`
	SandboxConnectionRate   *int      `json:"sandbox_connection_rate"`
}

// UpdateSettings applies p and returns the new settings.
func (s *Store) UpdateSettings(tenantID string, p SettingsPatch) (Settings, error) {
	if p.CABundlePath != nil {
		v := *p.CABundlePath
		if v != "" && (!strings.HasPrefix(v, "/") || len(v) > 1024 || strings.ContainsAny(v, "\x00\n\r")) {
			return Settings{}, invalid("ca_bundle_path", "must be an absolute path")
		}
	}
	for _, f := range []struct {
		name string
		rate *int
	}{{"sandbox_request_rate", p.SandboxRequestRate}, {"sandbox_connection_rate", p.SandboxConnectionRate}} {
		if f.rate != nil && (*f.rate < 0 || *f.rate > MaxSandboxRate) {
			return Settings{}, invalid(f.name, "a whole number of requests a second from 1 to %d, or 0 for the server's default", MaxSandboxRate)
		}
	}
	for _, f := range []struct {
		name string
		list *[]string
	}{{"egress_allow_hosts", p.EgressAllowHosts}, {"egress_deny_hosts", p.EgressDenyHosts}} {
		if f.list == nil {
			continue
		}
		n, err := normalizeEgressRules(f.name, *f.list)
		if err != nil {
			return Settings{}, err
		}
		*f.list = n
	}
	var t Tenant
	err := s.update(tenantID, func(tx storage.Tx) error {
		ok, err := getJSON(tx.Bucket(bTenants), []byte(tenantID), &t)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("tenant: %w", ErrNotFound)
		}
		old := t.Settings
		if p.AllowEndUserCredentials != nil {
			t.Settings.AllowEndUserCredentials = *p.AllowEndUserCredentials
		}
		if p.CABundlePath != nil {
			t.Settings.CABundlePath = *p.CABundlePath
		}
		if p.EgressAllowHosts != nil {
			t.Settings.EgressAllowHosts = *p.EgressAllowHosts
		}
		if p.EgressDenyHosts != nil {
			t.Settings.EgressDenyHosts = *p.EgressDenyHosts
		}
		if p.AllowAnyHostSecrets != nil {
			t.Settings.AllowAnyHostSecrets = *p.AllowAnyHostSecrets
		}
		if p.SandboxRequestRate != nil {
			t.Settings.SandboxRequestRate = *p.SandboxRequestRate
		}
		if p.SandboxConnectionRate != nil {
			t.Settings.SandboxConnectionRate = *p.SandboxConnectionRate
		}
		t.UpdatedAt = s.stamp()
		if err := putJSON(tx.Bucket(bTenants), []byte(t.ID), &t); err != nil {
			return err
		}
		// The names of the settings that changed; never their values.
		return s.txAudit(tx, ActionSettingsChanged, audit.Row{TenantID: t.ID, Details: map[string]string{"changed": changedSettings(old, t.Settings)}})
	})
	return t.Settings, err
}

// CreateAPIKey mints a key of kind for tenantID and returns its token, which
// is not stored and cannot be shown again. A browser key needs
// externalUserID; ttl zero means no expiry.
func (s *Store) CreateAPIKey(tenantID string, kind KeyKind, externalUserID string, ttl time.Duration) (string, APIKey, error) {
	if kind == KeyBrowser && (externalUserID == "" || !validExternalID(externalUserID)) {
		return "", APIKey{}, invalid("external_user_id", "required for a browser token, "+idRule, MaxIDLen)
	}
	if kind != KeyAdmin && kind != KeyBrowser {
		return "", APIKey{}, invalid("kind", "unknown key kind %q", kind)
	}
	var token string
	var k APIKey
	err := s.update(tenantID, func(tx storage.Tx) error {
		if tx.Bucket(bTenants).Get([]byte(tenantID)) == nil {
			return fmt.Errorf("tenant: %w", ErrNotFound)
		}
		var err error
		if token, k, err = s.putKey(tx, tenantID, kind, externalUserID, ttl); err != nil {
			return err
		}
		d := map[string]string{"key_id": k.ID}
		if k.ExpiresAt != nil {
			d["expires_at"] = k.ExpiresAt.Format(time.RFC3339)
		}
		if kind == KeyAdmin {
			return s.txAudit(tx, ActionAPIKeyIssued, audit.Row{TenantID: tenantID, Details: d})
		}
		return s.txAudit(tx, ActionBrowserTokenIssued, audit.Row{TenantID: tenantID, ExternalUserID: externalUserID, Details: d})
	})
	return token, k, err
}

// EnsureOperatorKey creates the operator key if there is none and returns
// its token; if one exists it returns "" (the token was shown once).
func (s *Store) EnsureOperatorKey() (string, error) {
	var token string
	err := s.backend.Update(func(tx storage.Tx) error {
		if tx.Bucket(bMeta).Get(metaOperator) != nil {
			return nil
		}
		var err error
		var k APIKey
		token, k, err = s.putKey(tx, "", KeyOperator, "", 0)
		if err != nil {
			return err
		}
		return tx.Bucket(bMeta).Put(metaOperator, []byte(k.ID))
	})
	return token, err
}

func (s *Store) putKey(tx storage.Tx, tenantID string, kind KeyKind, extUser string, ttl time.Duration) (string, APIKey, error) {
	prefix := map[KeyKind]string{KeyAdmin: tokenAdmin, KeyOperator: tokenOperator, KeyBrowser: tokenBrowser}[kind]
	token := newToken(prefix)
	k := APIKey{ID: newID(prefixKey), TenantID: tenantID, Kind: kind, ExternalUserID: extUser, CreatedAt: s.stamp()}
	if ttl > 0 {
		exp := k.CreatedAt.Add(ttl)
		k.ExpiresAt = &exp
	}
	return token, k, putJSON(tx.Bucket(bKeys), tokenHash(token), &k)
}

// Authenticate returns the live key whose token this is.
func (s *Store) Authenticate(token string) (APIKey, error) {
	if token == "" || len(token) > 256 {
		return APIKey{}, ErrUnauthenticated
	}
	var k APIKey
	var ok bool
	err := s.view(func(tx storage.Tx) error {
		var err error
		ok, err = getJSON(tx.Bucket(bKeys), tokenHash(token), &k)
		return err
	})
	if err != nil {
		return APIKey{}, err
	}
	if !ok || k.ExpiresAt != nil && !s.now().Before(*k.ExpiresAt) {
		return APIKey{}, ErrUnauthenticated
	}
	return k, nil
}
