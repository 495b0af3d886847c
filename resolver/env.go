package resolver

import (
	"context"
	"errors"
	"slices"
	"strings"

	"github.com/egressd/egressd/vault"
)

// EnvEntry is one environment variable of a sandbox: the placeholder that
// stands for the secret a name resolves to now.
type EnvEntry struct {
	Env         string `json:"env"`
	Name        string `json:"name"`
	Placeholder string `json:"placeholder"`
	SecretID    string `json:"secret_id"`
	Level       Level  `json:"level"`
}

// Env lists, for every name that resolves for the sandbox now, its env var
// and placeholder, issuing placeholders the sandbox does not hold yet.
// When two names want the same env var, the one found at the higher level
// (then the smaller name) keeps it.
func (r *Resolver) Env(ctx context.Context, tenantID, sandboxID string) ([]EnvEntry, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	entries, prefixes, err := r.envEntries(tenantID, sandboxID)
	if err != nil {
		return nil, err
	}
	if len(entries) == 0 {
		return []EnvEntry{}, nil
	}
	for name := range prefixes {
		if !slices.ContainsFunc(entries, func(e EnvEntry) bool { return e.Name == name }) {
			delete(prefixes, name)
		}
	}
	phs, err := r.store.EnsurePlaceholders(tenantID, sandboxID, prefixes)
	if errors.Is(err, vault.ErrNotFound) {
		return nil, ErrUnknownSandbox
	}
	if err != nil {
		return nil, err
	}
	for i := range entries {
		entries[i].Placeholder = phs[entries[i].Name]
	}
	return entries, nil
}

// envEntries lists the env vars of the names that resolve for the sandbox
// now, without placeholders, sorted by env var (one entry each), and the
// placeholder prefix of each listed name's secret.
func (r *Resolver) envEntries(tenantID, sandboxID string) ([]EnvEntry, map[string]string, error) {
	var entries []EnvEntry
	prefixes := map[string]string{}
	err := r.readSandbox(tenantID, sandboxID, func(rd *vault.Reader, sbx *vault.Sandbox, t *vault.Tenant) error {
		for name := range candidateNames(rd, sbx) {
			win, level, binding, _, err := walk(rd, t, sbx, name, false)
			if err != nil {
				return err
			}
			if win == nil {
				continue
			}
			env := win.ExposeAsEnv
			if binding != nil && binding.ExposeAsEnv != "" {
				env = binding.ExposeAsEnv
			}
			if env == "" {
				env = vault.EnvNameFor(name)
			}
			entries = append(entries, EnvEntry{Env: env, Name: name, SecretID: win.ID, Level: level})
			prefixes[name] = win.PlaceholderPrefix
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	slices.SortFunc(entries, func(a, b EnvEntry) int {
		if c := strings.Compare(a.Env, b.Env); c != 0 {
			return c
		}
		if a.Level != b.Level {
			return int(a.Level) - int(b.Level)
		}
		return strings.Compare(a.Name, b.Name)
	})
	entries = slices.CompactFunc(entries, func(a, b EnvEntry) bool { return a.Env == b.Env })
	return entries, prefixes, nil
}

// NameOfEnv returns the secret name that the sandbox's env var env carries
// now (a binding's or a secret's expose_as_env, or the name's derived env
// var); ok is false when no name resolving for the sandbox is exposed as
// env. It issues no placeholder.
func (r *Resolver) NameOfEnv(ctx context.Context, tenantID, sandboxID, env string) (name string, ok bool, err error) {
	if err := ctx.Err(); err != nil {
		return "", false, err
	}
	entries, _, err := r.envEntries(tenantID, sandboxID)
	if err != nil {
		return "", false, err
	}
	for _, e := range entries {
		if e.Env == env {
			return e.Name, true, nil
		}
	}
	return "", false, nil
}
