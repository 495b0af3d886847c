package vault

import (
	"time"
)

// Scope says who a secret belongs to; it decides at which level of the
// resolver's walk the secret can be found.
type Scope string

// The scopes, most specific first.
const (
	ScopeResource          Scope = "resource"
	ScopeUser              Scope = "user"
	ScopeExternalUser      Scope = "external_user"
	ScopeExternalWorkspace Scope = "external_workspace"
	ScopeWorkspace         Scope = "workspace"
	ScopeTenant            Scope = "tenant"
)

// Scopes lists every scope, most specific first.
var Scopes = []Scope{ScopeResource, ScopeUser, ScopeExternalUser, ScopeExternalWorkspace, ScopeWorkspace, ScopeTenant}

// Valid reports whether s is a known scope.
func (s Scope) Valid() bool {
	for _, k := range Scopes {
		if s == k {
			return true
		}
	}
	return false
}

// EndUser reports whether secrets of this scope belong to an end-user and
// are therefore blocked when a tenant turns allow_end_user_credentials off.
func (s Scope) EndUser() bool {
	return s != ScopeTenant && s != ScopeExternalWorkspace
}

// ResourceType is the kind of compute a sandbox record stands for.
type ResourceType string

// The resource types. Sandboxes and computers are one model.
const (
	ResourceSandbox  ResourceType = "sandbox"
	ResourceComputer ResourceType = "computer"
)

// Valid reports whether t is a known resource type.
func (t ResourceType) Valid() bool { return t == ResourceSandbox || t == ResourceComputer }

// Location is a place in a request where a placeholder may be substituted.
type Location string

// The locations.
const (
	InHeader Location = "header"
	InQuery  Location = "query"
	InPath   Location = "path"
	InBody   Location = "body"
)

// DefaultSubstituteIn is used when a secret names no locations: headers,
// Basic credentials included. The rest is opt-in: an API may store a URL
// (query, path) and hand the value back to a later request, and agents
// quote their own placeholders in prompts (body).
var DefaultSubstituteIn = []Location{InHeader}

// SecretTypes are the accepted values of Secret.Type.
var SecretTypes = []string{"generic", "api_key", "bearer_token", "basic_auth", "password", "oauth_token"}

// KeyKind is the power of an API key.
type KeyKind string

// The key kinds.
const (
	// KeyAdmin manages one tenant.
	KeyAdmin KeyKind = "admin"
	// KeyOperator belongs to no tenant and may only create tenants.
	KeyOperator KeyKind = "operator"
	// KeyBrowser is read-only and sees only one external user's resources.
	KeyBrowser KeyKind = "browser"
)

// Settings are a tenant's switches.
type Settings struct {
	// AllowEndUserCredentials lets secrets of end-user scopes resolve. When
	// false only tenant and external_workspace secrets resolve.
	AllowEndUserCredentials bool `json:"allow_end_user_credentials"`
	// CABundlePath is where the platform places egressd's CA bundle inside
	// a sandbox; empty means the server's default.
	CABundlePath string `json:"ca_bundle_path,omitempty"`
	// EgressAllowHosts, when not empty, are the only hosts (exact names, IPs
	// or *.suffix) and address ranges (CIDRs) this tenant's sandboxes may
	// reach through the proxy; hostrules.go says what each kind can stop.
	EgressAllowHosts []string `json:"egress_allow_hosts,omitempty"`
	// EgressDenyHosts are hosts and address ranges this tenant's sandboxes
	// may never reach; a deny wins over an allow.
	EgressDenyHosts []string `json:"egress_deny_hosts,omitempty"`
	// AllowAnyHostSecrets lets a secret's allowed_hosts be ["*"] (any
	// host). Off (the default): such a secret is refused when stored, and
	// one stored while it was on counts as absent in the walk.
	AllowAnyHostSecrets bool `json:"allow_any_host_secrets"`
	// SandboxRequestRate bounds the proxy requests of one sandbox, a
	// second (bursts of twice as many); zero means the server's default.
	SandboxRequestRate int `json:"sandbox_request_rate,omitempty"`
	// SandboxConnectionRate bounds the new proxy connections (CONNECTs) of
	// one sandbox, a second (bursts of twice as many); zero means the
	// server's default.
	SandboxConnectionRate int `json:"sandbox_connection_rate,omitempty"`
	// SourcePrefixes are the addresses (normalised prefixes, as
	// source_addrs) inside which the tenant's sandboxes may claim
	// source_addrs for the transparent listener; none: they may claim
	// none. Only the operator sets them (Store.SetSourcePrefixes);
	// UpdateSettings leaves them as they are.
	SourcePrefixes []string `json:"source_prefixes,omitempty"`
}

// MaxSandboxRate bounds the per-sandbox rates a tenant may set.
const MaxSandboxRate = 100_000

// DefaultSettings are the settings of a new tenant.
func DefaultSettings() Settings { return Settings{AllowEndUserCredentials: true} }

// Tenant is one customer of egressd; every other record belongs to one.
type Tenant struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Settings  Settings  `json:"settings"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// APIKey is a stored credential of the admin API. Only its hash is kept.
type APIKey struct {
	ID             string     `json:"id"`
	TenantID       string     `json:"tenant_id,omitempty"`
	Kind           KeyKind    `json:"kind"`
	ExternalUserID string     `json:"external_user_id,omitempty"`
	CreatedAt      time.Time  `json:"created_at"`
	ExpiresAt      *time.Time `json:"expires_at,omitempty"`
}

// Secret is a stored credential's metadata. Its value is sealed and is only
// ever opened by Store.OpenValue; no field here holds it.
type Secret struct {
	ID                  string            `json:"id"`
	TenantID            string            `json:"tenant_id"`
	Name                string            `json:"name"`
	Type                string            `json:"type"`
	Scope               Scope             `json:"scope"`
	OwnerUserID         string            `json:"owner_user_id,omitempty"`
	WorkspaceID         string            `json:"workspace_id,omitempty"`
	ExternalUserID      string            `json:"external_user_id,omitempty"`
	ExternalWorkspaceID string            `json:"external_workspace_id,omitempty"`
	ResourceID          string            `json:"resource_id,omitempty"`
	ResourceType        ResourceType      `json:"resource_type,omitempty"`
	ExposeAsEnv         string            `json:"expose_as_env,omitempty"`
	AllowedHosts        []string          `json:"allowed_hosts"`
	SubstituteIn        []Location        `json:"substitute_in"`
	PlaceholderPrefix   string            `json:"placeholder_prefix,omitempty"`
	Metadata            map[string]string `json:"metadata,omitempty"`
	Disabled            bool              `json:"disabled"`
	Version             int               `json:"version"`
	HasRefreshToken     bool              `json:"has_refresh_token"`
	ExpiresAt           *time.Time        `json:"expires_at,omitempty"`
	CreatedAt           time.Time         `json:"created_at"`
	UpdatedAt           time.Time         `json:"updated_at"`
}

// ScopeOwner is the id that, with tenant, scope and name, makes a secret unique.
func (s *Secret) ScopeOwner() string {
	return scopeOwner(s.Scope, s.OwnerUserID, s.ExternalUserID, s.ExternalWorkspaceID, s.WorkspaceID, s.ResourceType, s.ResourceID)
}

func scopeOwner(scope Scope, ownerUser, extUser, extWorkspace, workspace string, rt ResourceType, resourceID string) string {
	switch scope {
	case ScopeUser:
		return ownerUser
	case ScopeExternalUser:
		return extUser
	case ScopeExternalWorkspace:
		return extWorkspace
	case ScopeWorkspace:
		return workspace
	case ScopeResource:
		if resourceID == "" {
			return ""
		}
		return string(rt) + ":" + resourceID
	}
	return ""
}

// Binding attaches a secret of the tenant to a resource under an env var name.
type Binding struct {
	ID           string       `json:"id"`
	TenantID     string       `json:"tenant_id"`
	SecretID     string       `json:"secret_id"`
	ResourceID   string       `json:"resource_id"`
	ResourceType ResourceType `json:"resource_type"`
	ExposeAsEnv  string       `json:"expose_as_env,omitempty"`
	CreatedAt    time.Time    `json:"created_at"`
}

// Sandbox is a sandbox or computer that sends traffic through the proxy.
// Its attribution is stamped at creation and never changes.
type Sandbox struct {
	ID                  string            `json:"id"`
	TenantID            string            `json:"tenant_id"`
	ResourceType        ResourceType      `json:"resource_type"`
	Name                string            `json:"name,omitempty"`
	OwnerUserID         string            `json:"owner_user_id,omitempty"`
	WorkspaceID         string            `json:"workspace_id,omitempty"`
	ExternalUserID      string            `json:"external_user_id,omitempty"`
	ExternalWorkspaceID string            `json:"external_workspace_id,omitempty"`
	ExternalProjectID   string            `json:"external_project_id,omitempty"`
	Metadata            map[string]string `json:"metadata,omitempty"`
	CreatedAt           time.Time         `json:"created_at"`
	// TokenIssuedAt is when the sandbox's current proxy token was issued
	// (zero for sandboxes created before tokens could be re-issued). A
	// connection authenticated with an older token stops at its next
	// request.
	TokenIssuedAt time.Time `json:"token_issued_at,omitzero"`
	// TokenExpiresAt is when the proxy token stops working; nil: never.
	TokenExpiresAt *time.Time `json:"token_expires_at,omitempty"`
	// SourceAddrs are the addresses (single IPs, written bare, or CIDR
	// prefixes) its connections come from, normalised
	// (NormalizeSourceAddrs): the transparent listener identifies the
	// sandbox by them. No two sandboxes on a store overlap.
	SourceAddrs []string `json:"source_addrs,omitempty"`
}

// TokenLive reports whether the sandbox's proxy token is still good at now.
func (x *Sandbox) TokenLive(now time.Time) bool {
	return x.TokenExpiresAt == nil || now.Before(*x.TokenExpiresAt)
}

// Placeholder is what a sandbox's environment holds instead of a value.
type Placeholder struct {
	// Text is the whole placeholder: prefix, marker and tail.
	Text      string `json:"text"`
	TenantID  string `json:"tenant_id"`
	SandboxID string `json:"sandbox_id"`
	Name      string `json:"name"`
}
