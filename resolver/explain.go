package resolver

import (
	"context"

	"github.com/egressd/egressd/vault"
)

// Explanation is the walk for one name, level by level: the answer to
// "why is my env var empty". It never holds a value.
type Explanation struct {
	SandboxID string `json:"sandbox_id"`
	Name      string `json:"name"`
	// MatchedAs says how the asked name was read: MatchedSecretName, or
	// MatchedEnvName when it was the env var a secret is exposed as (Env
	// then holds it and Name the secret's name).
	MatchedAs string `json:"matched_as"`
	Env       string `json:"env,omitempty"`
	Resolved  bool   `json:"resolved"`
	// Level is the level that matched (none if nothing resolves).
	Level    Level  `json:"level"`
	SecretID string `json:"secret_id,omitempty"`
	Version  int    `json:"version,omitempty"`
	// Host is the destination asked about, if any; HostAllowed says whether
	// the matched secret may be used there.
	Host                    string `json:"host,omitempty"`
	HostAllowed             *bool  `json:"host_allowed,omitempty"`
	AllowEndUserCredentials bool   `json:"allow_end_user_credentials"`
	Steps                   []Step `json:"steps"`
}

// How Explain read the asked name.
const (
	MatchedSecretName = "secret_name"
	MatchedEnvName    = "env_name"
)

// ExplainAny explains asked as a secret name; when that resolves nothing
// and asked is the env var of a name that resolves for the sandbox, it
// explains that name instead (MatchedAs says which).
func (r *Resolver) ExplainAny(ctx context.Context, tenantID, sandboxID, asked, host string) (Explanation, error) {
	if vault.ValidName(asked) {
		ex, err := r.Explain(ctx, tenantID, sandboxID, asked, host)
		if err != nil || ex.Resolved || !vault.ValidEnvName(asked) {
			return ex, err
		}
	}
	name, ok, err := r.NameOfEnv(ctx, tenantID, sandboxID, asked)
	if err != nil {
		return Explanation{}, err
	}
	if !ok {
		return r.Explain(ctx, tenantID, sandboxID, asked, host)
	}
	ex, err := r.Explain(ctx, tenantID, sandboxID, name, host)
	ex.MatchedAs, ex.Env = MatchedEnvName, asked
	return ex, err
}

// Explain walks every level for (sandbox, name) without the cache and
// reports what each found. host, if not empty, is checked against the
// matched secret's allowed_hosts.
func (r *Resolver) Explain(ctx context.Context, tenantID, sandboxID, name, host string) (Explanation, error) {
	ex := Explanation{SandboxID: sandboxID, Name: name, Host: host, MatchedAs: MatchedSecretName}
	if err := ctx.Err(); err != nil {
		return ex, err
	}
	err := r.readSandbox(tenantID, sandboxID, func(rd *vault.Reader, sbx *vault.Sandbox, t *vault.Tenant) error {
		ex.AllowEndUserCredentials = t.Settings.AllowEndUserCredentials
		win, level, _, steps, err := walk(rd, t, sbx, name, true)
		if err != nil {
			return err
		}
		for i := range steps {
			steps[i].Detail = detail(&steps[i])
		}
		ex.Steps = steps
		if win != nil {
			ex.Resolved, ex.Level, ex.SecretID, ex.Version = true, level, win.ID, win.Version
			if host != "" {
				ok := vault.HostAllowed(win.AllowedHosts, host)
				ex.HostAllowed = &ok
			}
		}
		return nil
	})
	return ex, err
}

func detail(s *Step) string {
	switch s.Status {
	case StatusMatched:
		return "this secret resolves the name"
	case StatusShadowed:
		return "a usable secret is here, but a higher level matched first"
	case StatusDisabled:
		return "a secret is here but disabled; it counts as absent"
	case StatusNoAllowedHosts:
		return "a secret is here but has no allowed_hosts (stored by an older version, which sent it to any host); it counts as absent until it is stored again with allowed_hosts"
	case StatusBlockedBySetting:
		return "a secret is here but the tenant's " + s.setting + " is off"
	case StatusEmptyAttribution:
		return "the sandbox has no " + s.Attribute + ", so this level matches nothing"
	case StatusNotFound:
		if s.Level == LevelBinding {
			return "no secret of this name is bound to the sandbox"
		}
		return "no secret of this name at this level"
	}
	return ""
}
