package resolver

import (
	"errors"

	"github.com/egressd/egressd/vault"
)

// Step is what one level of the walk found for a name. It never holds a value.
type Step struct {
	Level     Level  `json:"level"`
	Rank      int    `json:"rank"`
	Attribute string `json:"attribute,omitempty"`
	// AttributeValue is the sandbox's id at this level (empty when it has none).
	AttributeValue string         `json:"attribute_value,omitempty"`
	Status         Status         `json:"status"`
	SecretID       string         `json:"secret_id,omitempty"`
	Scope          vault.Scope    `json:"scope,omitempty"`
	BindingID      string         `json:"binding_id,omitempty"`
	Version        int            `json:"version,omitempty"`
	Detail         string         `json:"detail,omitempty"`
	candidates     []vault.Secret // internal: what the level saw
	setting        string         // internal: the setting that blocked it
}

// walk runs the six levels for (sbx, name) over one snapshot. With all set
// it visits every level (for Explain); otherwise it stops at the first
// match. It returns the winning secret, its level and binding (level 1), and
// the steps visited.
func walk(rd *vault.Reader, t *vault.Tenant, sbx *vault.Sandbox, name string, all bool) (win *vault.Secret, level Level, binding *vault.Binding, steps []Step, err error) {
	usable := func(sec *vault.Secret) (Status, string) {
		switch {
		case sec.Disabled:
			return StatusDisabled, ""
		case len(sec.AllowedHosts) == 0:
			return StatusNoAllowedHosts, ""
		case !t.Settings.AllowEndUserCredentials && sec.Scope.EndUser():
			return StatusBlockedBySetting, "allow_end_user_credentials"
		case !t.Settings.AllowAnyHostSecrets && vault.AnyHostAllowed(sec.AllowedHosts):
			return StatusBlockedBySetting, "allow_any_host_secrets"
		}
		return StatusMatched, ""
	}
	for _, l := range Levels {
		field, val := l.attribute(sbx)
		st := Step{Level: l, Rank: int(l), Attribute: field, AttributeValue: val}
		if l == LevelBinding {
			bs, err := rd.BindingsOf(sbx.TenantID, sbx.ID)
			if err != nil {
				return nil, 0, nil, nil, err
			}
			st.Status = StatusNotFound
			best := Status("")
			for i := range bs {
				sec, err := rd.Secret(sbx.TenantID, bs[i].SecretID)
				if errors.Is(err, vault.ErrNotFound) {
					continue
				}
				if err != nil {
					return nil, 0, nil, nil, err
				}
				if sec.Name != name {
					continue
				}
				s, setting := usable(&sec)
				if better(s, best) {
					best = s
					st.Status, st.SecretID, st.Scope, st.BindingID, st.Version = s, sec.ID, sec.Scope, bs[i].ID, sec.Version
					st.setting = setting
					if s == StatusMatched && win == nil {
						w, b := sec, bs[i]
						win, level, binding = &w, l, &b
					}
				}
			}
		} else {
			st.Status = StatusEmptyAttribution
			owner := val
			if l == LevelTenant || owner != "" {
				sec, err := rd.SecretAt(sbx.TenantID, l.scope(), owner, name)
				switch {
				case errors.Is(err, vault.ErrNotFound):
					st.Status = StatusNotFound
				case err != nil:
					return nil, 0, nil, nil, err
				default:
					st.Status, st.setting = usable(&sec)
					st.SecretID, st.Scope, st.Version = sec.ID, sec.Scope, sec.Version
					if st.Status == StatusMatched && win == nil {
						w := sec
						win, level = &w, l
					}
				}
			}
		}
		if st.Status == StatusMatched && level != l {
			st.Status = StatusShadowed
		}
		steps = append(steps, st)
		if win != nil && !all {
			break
		}
	}
	return win, level, binding, steps, nil
}

// better orders what a binding level reports when several bound secrets
// share the name: a usable one beats a blocked one beats one without
// allowed hosts beats a disabled one.
func better(s, than Status) bool {
	rank := map[Status]int{"": 0, StatusDisabled: 1, StatusNoAllowedHosts: 2, StatusBlockedBySetting: 3, StatusMatched: 4}
	return rank[s] > rank[than]
}
