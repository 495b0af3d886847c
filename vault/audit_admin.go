package vault

import (
	"maps"
	"strconv"
	"strings"

	"github.com/egressd/egressd/audit"
	"github.com/egressd/egressd/vault/storage"
)

// Actor is who makes an admin write; it is recorded in the write's audit
// row. The zero Actor records nothing; an unknown Kind fails every write.
type Actor struct {
	// Kind is one of ActorAPIKey, ActorBrowserToken, ActorOperator, ActorCLI.
	Kind string `json:"kind"`
	// ID is the API key's or browser token's id (APIKey.ID; never the
	// token), or a name for an operator or the CLI.
	ID string `json:"id,omitempty"`
}

// The kinds of actors.
const (
	ActorAPIKey       = "api_key"
	ActorBrowserToken = "browser_token"
	ActorOperator     = "operator"
	ActorCLI          = "cli"
)

// ActorOf is the actor of a request authenticated with k.
func ActorOf(k APIKey) Actor {
	switch k.Kind {
	case KeyBrowser:
		return Actor{Kind: ActorBrowserToken, ID: k.ID}
	case KeyOperator:
		return Actor{Kind: ActorOperator, ID: k.ID}
	}
	return Actor{Kind: ActorAPIKey, ID: k.ID}
}

// The actions of admin rows.
const (
	ActionSecretCreated      = "secret.created"
	ActionSecretUpdated      = "secret.updated"
	ActionSecretRotated      = "secret.rotated"
	ActionSecretDisabled     = "secret.disabled"
	ActionSecretEnabled      = "secret.enabled"
	ActionSecretDeleted      = "secret.deleted"
	ActionBindingCreated     = "binding.created"
	ActionBindingDeleted     = "binding.deleted"
	ActionSandboxCreated     = "sandbox.created"
	ActionSandboxDeleted     = "sandbox.deleted"
	ActionSandboxToken       = "sandbox.token_issued"
	ActionSandboxUpdated     = "sandbox.updated"
	ActionSettingsChanged    = "settings.changed"
	ActionBrowserTokenIssued = "browser_token.issued"
	ActionOAuthCompleted     = "oauth.completed"
	ActionTenantCreated      = "tenant.created"
	ActionAPIKeyIssued       = "api_key.issued"
	ActionVaultRekeyed       = "vault.rekeyed"
)

// adminAudit is what a Store records its writes as.
type adminAudit struct {
	actor Actor
	// action, when set, replaces the action of every write (WithAudit).
	action  string
	details map[string]string
}

// As returns a Store on the same file whose writes each append an admin
// audit row, naming a as the actor, in the write's own transaction: the
// write and its row commit together or not at all, and a refused write
// leaves no row. s itself is unchanged; its writes record no row unless
// it came from As too.
//
// The writes that record a row: UpsertSecret (secret.created or
// secret.updated), RotateSecret, SetDisabled (secret.disabled or
// secret.enabled), DeleteSecret, CreateBinding, DeleteBinding,
// CreateSandbox, DeleteSandbox, UpdateSandbox (sandbox.updated),
// UpdateSettings and SetSourcePrefixes (settings.changed), CreateAPIKey of a
// browser key (browser_token.issued) and CreateTenant (tenant.created, in
// the new tenant's log, with the id of its first admin key).
func (s *Store) As(a Actor) *Store {
	c := *s // the same file, and what s may write (WithReservedMetadata)
	c.audit.actor = a
	return &c
}

// WithAudit returns a Store on the same file whose audited writes record
// action instead of their own (when action is not empty) and add details
// to their row: for a write that is part of something larger, such as an
// OAuth flow storing its token (ActionOAuthCompleted, with the provider).
// Details must hold names and ids only, never a value. It records nothing
// without an actor (As).
func (s *Store) WithAudit(action string, details map[string]string) *Store {
	c := *s
	c.audit.action, c.audit.details = action, maps.Clone(details)
	return &c
}

// Actor is who this Store's writes are recorded as; zero for a Store not
// made by As.
func (s *Store) Actor() Actor { return s.audit.actor }

// txAudit appends the admin row of a write to tx, if s has an actor. row
// carries the identity chain; action and details are the write's own.
func (s *Store) txAudit(tx storage.Tx, action string, row audit.Row) error {
	a := s.audit
	switch a.actor.Kind {
	case "":
		return nil
	case ActorAPIKey, ActorBrowserToken, ActorOperator, ActorCLI:
	default:
		// The write is refused with its row: it commits with none.
		return invalid("actor", "unknown actor kind %q", a.actor.Kind)
	}
	row.Kind, row.Action = audit.KindAdmin, action
	if a.action != "" {
		row.Action = a.action
	}
	row.ActorKind, row.ActorID = a.actor.Kind, a.actor.ID
	if len(a.details) > 0 {
		if row.Details == nil {
			row.Details = map[string]string{}
		}
		maps.Copy(row.Details, a.details)
	}
	row.Time = s.stamp()
	return audit.Put(tx, row, s.now)
}

// secretAudit is a row about sec: its tenant, scope owner ids and version.
func secretAudit(sec *Secret) audit.Row {
	r := audit.Row{
		TenantID: sec.TenantID, WorkspaceID: sec.WorkspaceID, OwnerUserID: sec.OwnerUserID,
		ExternalUserID: sec.ExternalUserID, ExternalWorkspaceID: sec.ExternalWorkspaceID,
		SecretID: sec.ID, SecretName: sec.Name, SecretVersion: sec.Version,
		Details: map[string]string{"scope": string(sec.Scope)},
	}
	if sec.Scope == ScopeResource {
		r.SandboxID = sec.ResourceID
	}
	return r
}

// sandboxAudit is a row about sbx: its attribution.
func sandboxAudit(sbx *Sandbox) audit.Row {
	return audit.Row{
		TenantID: sbx.TenantID, WorkspaceID: sbx.WorkspaceID, OwnerUserID: sbx.OwnerUserID,
		ExternalUserID: sbx.ExternalUserID, ExternalWorkspaceID: sbx.ExternalWorkspaceID,
		ExternalProjectID: sbx.ExternalProjectID, SandboxID: sbx.ID,
		Details: map[string]string{"resource_type": string(sbx.ResourceType)},
	}
}

// bindingAudit is a row about binding b of sec to sbx: the sandbox's
// attribution (whose environment the secret enters) and the secret.
func bindingAudit(b *Binding, sec *Secret, sbx *Sandbox) audit.Row {
	r := sandboxAudit(sbx)
	r.SecretID, r.SecretName, r.SecretVersion = sec.ID, sec.Name, sec.Version
	r.Details["binding_id"] = b.ID
	r.Details["secret_scope"] = string(sec.Scope)
	if b.ExposeAsEnv != "" {
		r.Details["expose_as_env"] = b.ExposeAsEnv
	}
	return r
}

// changedSettings names the settings that differ between a and b.
func changedSettings(a, b Settings) string {
	var names []string
	if a.AllowEndUserCredentials != b.AllowEndUserCredentials {
		names = append(names, "allow_end_user_credentials")
	}
	if a.CABundlePath != b.CABundlePath {
		names = append(names, "ca_bundle_path")
	}
	if strings.Join(a.EgressAllowHosts, "\n") != strings.Join(b.EgressAllowHosts, "\n") {
		names = append(names, "egress_allow_hosts")
	}
	if strings.Join(a.EgressDenyHosts, "\n") != strings.Join(b.EgressDenyHosts, "\n") {
		names = append(names, "egress_deny_hosts")
	}
	if a.AllowAnyHostSecrets != b.AllowAnyHostSecrets {
		names = append(names, "allow_any_host_secrets")
	}
	if a.SandboxRequestRate != b.SandboxRequestRate {
		names = append(names, "sandbox_request_rate")
	}
	if a.SandboxConnectionRate != b.SandboxConnectionRate {
		names = append(names, "sandbox_connection_rate")
	}
	if strings.Join(a.SourcePrefixes, "\n") != strings.Join(b.SourcePrefixes, "\n") {
		names = append(names, "source_prefixes")
	}
	return strings.Join(names, ",")
}

func itoa(n int) string { return strconv.Itoa(n) }
