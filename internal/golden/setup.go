package golden

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/egressd/egressd/vault"
)

// Setup is a case's "setup" section (JSON): what the vault holds before the
// request is sent.
type Setup struct {
	// Tenant patches the tenant's settings (allow_end_user_credentials,
	// egress_allow_hosts, egress_deny_hosts), after the secrets are stored.
	Tenant vault.SettingsPatch `json:"tenant"`
	// Sandboxes by local name, with their attribution.
	Sandboxes map[string]vault.SandboxInput `json:"sandboxes"`
	// Secrets, created in this order.
	Secrets []SecretSpec `json:"secrets"`
	// Bindings attach a secret (by label) to a sandbox (by local name).
	Bindings []BindingSpec `json:"bindings"`
}

// SecretSpec is one secret of a case.
type SecretSpec struct {
	// Label names the secret in tokens and bindings; empty means Name.
	Label string `json:"label"`
	Name  string `json:"name"`
	Value string `json:"value"`
	// Scope and the owner id that goes with it.
	Scope               vault.Scope `json:"scope"`
	OwnerUserID         string      `json:"owner_user_id"`
	WorkspaceID         string      `json:"workspace_id"`
	ExternalUserID      string      `json:"external_user_id"`
	ExternalWorkspaceID string      `json:"external_workspace_id"`
	// Sandbox (a local name) is the resource of a resource-scoped secret,
	// or the sandbox that expose_as_env binds it to.
	Sandbox           string           `json:"sandbox"`
	ExposeAsEnv       string           `json:"expose_as_env"`
	AllowedHosts      []string         `json:"allowed_hosts"`
	SubstituteIn      []vault.Location `json:"substitute_in"`
	PlaceholderPrefix string           `json:"placeholder_prefix"`
	// Rotations are the values of versions 2, 3, … in order.
	Rotations []string `json:"rotations"`
	// Disabled disables the secret after it was created and rotated.
	Disabled bool `json:"disabled"`
	// Refused names the field for which storing the secret must be
	// refused (say "allowed_hosts"): setup checks that the refusal names
	// it, and the secret is not stored: its name resolves as if it were
	// absent.
	Refused string `json:"refused"`
}

// BindingSpec binds a secret to a sandbox.
type BindingSpec struct {
	Secret      string `json:"secret"`
	Sandbox     string `json:"sandbox"`
	ExposeAsEnv string `json:"expose_as_env"`
}

func (s *SecretSpec) label() string {
	if s.Label != "" {
		return s.Label
	}
	return s.Name
}

// values lists the secret's values by version (index 0 is version 1).
func (s *SecretSpec) values() []string { return append([]string{s.Value}, s.Rotations...) }

func parseSetup(data []byte) (*Setup, error) {
	var s Setup
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("setup: %w", err)
	}
	labels := map[string]bool{}
	for i, sec := range s.Secrets {
		l := sec.label()
		if labels[l] {
			return nil, fmt.Errorf("setup: secret %d: label %q used twice (set \"label\")", i, l)
		}
		labels[l] = true
		if sec.Sandbox != "" {
			if _, ok := s.Sandboxes[sec.Sandbox]; !ok {
				return nil, fmt.Errorf("setup: secret %q: unknown sandbox %q", l, sec.Sandbox)
			}
		}
		if sec.Refused != "" && (len(sec.Rotations) > 0 || sec.Disabled) {
			return nil, fmt.Errorf("setup: secret %q: a refused secret has no rotations and cannot be disabled", l)
		}
	}
	for _, b := range s.Bindings {
		if !labels[b.Secret] {
			return nil, fmt.Errorf("setup: binding: unknown secret %q", b.Secret)
		}
		if s.secret(b.Secret).Refused != "" {
			return nil, fmt.Errorf("setup: binding: secret %q is refused", b.Secret)
		}
		if _, ok := s.Sandboxes[b.Sandbox]; !ok {
			return nil, fmt.Errorf("setup: binding: unknown sandbox %q", b.Sandbox)
		}
	}
	return &s, nil
}

func (s *Setup) secret(label string) *SecretSpec {
	for i := range s.Secrets {
		if s.Secrets[i].label() == label {
			return &s.Secrets[i]
		}
	}
	return nil
}
