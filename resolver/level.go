package resolver

import (
	"fmt"

	"github.com/egressd/egressd/vault"
)

// Level is the step of the six-level walk that matched. Lower wins.
type Level uint8

// The levels, in walk order.
const (
	LevelNone Level = iota
	LevelBinding
	LevelUser
	LevelExternalUser
	LevelExternalWorkspace
	LevelWorkspace
	LevelTenant
)

// Levels lists the six levels in walk order.
var Levels = []Level{LevelBinding, LevelUser, LevelExternalUser, LevelExternalWorkspace, LevelWorkspace, LevelTenant}

var levelNames = [...]string{"none", "binding", "user", "external_user", "external_workspace", "workspace", "tenant"}

// String is the level's name, as used in API answers, audit rows and metric labels.
func (l Level) String() string {
	if int(l) < len(levelNames) {
		return levelNames[l]
	}
	return "unknown"
}

// MarshalText makes a Level a JSON string.
func (l Level) MarshalText() ([]byte, error) { return []byte(l.String()), nil }

// UnmarshalText parses a level's name, so that answers carrying a Level
// (Explain, Env) decode back into it.
func (l *Level) UnmarshalText(b []byte) error {
	for i, n := range levelNames {
		if string(b) == n {
			*l = Level(i)
			return nil
		}
	}
	return fmt.Errorf("resolver: unknown level %q", b)
}

// scope is the secret scope a level looks up (binding levels look at bindings).
func (l Level) scope() vault.Scope {
	switch l {
	case LevelUser:
		return vault.ScopeUser
	case LevelExternalUser:
		return vault.ScopeExternalUser
	case LevelExternalWorkspace:
		return vault.ScopeExternalWorkspace
	case LevelWorkspace:
		return vault.ScopeWorkspace
	case LevelTenant:
		return vault.ScopeTenant
	}
	return ""
}

// attribute names the sandbox field a level keys on, and its value for sbx.
func (l Level) attribute(sbx *vault.Sandbox) (field, value string) {
	switch l {
	case LevelBinding:
		return "id", sbx.ID
	case LevelUser:
		return "owner_user_id", sbx.OwnerUserID
	case LevelExternalUser:
		return "external_user_id", sbx.ExternalUserID
	case LevelExternalWorkspace:
		return "external_workspace_id", sbx.ExternalWorkspaceID
	case LevelWorkspace:
		return "workspace_id", sbx.WorkspaceID
	}
	return "", ""
}

// Status is what one level of the walk found.
type Status string

// The statuses of a step.
const (
	// StatusMatched: this level's secret resolves the name.
	StatusMatched Status = "matched"
	// StatusNotFound: no secret of that name at this level.
	StatusNotFound Status = "not_found"
	// StatusEmptyAttribution: the sandbox has no id for this level, so it matches nothing.
	StatusEmptyAttribution Status = "empty_attribution"
	// StatusDisabled: a secret exists here but is disabled, so it counts as absent.
	StatusDisabled Status = "disabled"
	// StatusNoAllowedHosts: a secret exists here but has no allowed_hosts
	// (stored by a version that read none as any host), so it counts as
	// absent until it is stored again with hosts.
	StatusNoAllowedHosts Status = "no_allowed_hosts"
	// StatusBlockedBySetting: a secret exists here but a tenant setting
	// is off: allow_end_user_credentials and its scope is end-user, or
	// allow_any_host_secrets and its allowed_hosts are ["*"].
	StatusBlockedBySetting Status = "blocked_by_setting"
	// StatusShadowed: a usable secret exists here but a higher level matched first.
	StatusShadowed Status = "shadowed"
)
