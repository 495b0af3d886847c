package api

import (
	"net/http"
	"slices"

	"github.com/egressd/egressd/vault"
)

// UpsertAnswer is the answer of POST /api/v1/egress/secrets: the secret's
// metadata (never its value), whether it was created (201) or updated
// (200), and the binding the upsert made, if any.
type UpsertAnswer struct {
	Secret  vault.Secret   `json:"secret"`
	Created bool           `json:"created"`
	Binding *vault.Binding `json:"binding,omitempty"`
}

// SecretList is the answer of GET /api/v1/egress/secrets: a page of
// secrets in id order, and the cursor of the next page ("" after the
// last).
type SecretList struct {
	Secrets    []vault.Secret `json:"secrets"`
	NextCursor string         `json:"next_cursor"`
}

// upsertSecret creates a secret or updates the one with the same (scope,
// scope owner, name). The answer is built from what the vault stored, never
// from the input, so the value cannot be echoed.
func (s *Server) upsertSecret(w http.ResponseWriter, r *http.Request, p *principal) error {
	var in vault.SecretInput
	if err := decode(w, r, &in); err != nil {
		return redact(err, in.Value, in.RefreshToken)
	}
	res, err := s.writer(p).UpsertSecret(p.tenant(), in)
	if err != nil {
		return redact(err, in.Value, in.RefreshToken)
	}
	status := http.StatusOK
	if res.Created {
		status = http.StatusCreated
		w.Header().Set("Location", "/api/v1/egress/secrets/"+res.Secret.ID)
	}
	writeJSON(w, status, UpsertAnswer{Secret: res.Secret, Created: res.Created, Binding: res.Binding})
	return nil
}

// listSecrets answers a page of the tenant's secrets, narrowed by the
// query's filters; a browser token sees only its external user's.
func (s *Server) listSecrets(w http.ResponseWriter, r *http.Request, p *principal) error {
	q := r.URL.Query()
	pg, err := listPage(q)
	if err != nil {
		return err
	}
	f := vault.SecretFilter{
		ResourceID:          q.Get("resource_id"),
		ResourceType:        vault.ResourceType(q.Get("resource_type")),
		Scope:               vault.Scope(q.Get("scope")),
		Type:                q.Get("type"),
		WorkspaceID:         q.Get("workspace_id"),
		OwnerUserID:         q.Get("owner_user_id"),
		ExternalUserID:      q.Get("external_user_id"),
		ExternalWorkspaceID: q.Get("external_workspace_id"),
		Name:                q.Get("name"),
	}
	if f.ResourceType != "" && !f.ResourceType.Valid() {
		return errorf(ErrBadRequest, "resource_type: unknown resource type %q (want sandbox or computer)", f.ResourceType)
	}
	if f.Scope != "" && !f.Scope.Valid() {
		return errorf(ErrBadRequest, "scope: unknown scope %q (want one of %v)", f.Scope, vault.Scopes)
	}
	if f.Type != "" && !slices.Contains(vault.SecretTypes, f.Type) {
		return errorf(ErrBadRequest, "type: unknown type %q (want one of %v)", f.Type, vault.SecretTypes)
	}
	if f.Name != "" && !vault.ValidName(f.Name) {
		return errorf(ErrBadRequest, "name: must match [A-Za-z0-9_.-]{1,128}")
	}
	if p.browser() {
		if f.ExternalUserID != "" && f.ExternalUserID != p.externalUser() {
			writeJSON(w, http.StatusOK, SecretList{Secrets: []vault.Secret{}})
			return nil
		}
		f.ExternalUserID = p.externalUser()
	}
	list, next, err := s.store.ListSecretsPage(p.tenant(), f, pg)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, SecretList{Secrets: list, NextCursor: next})
	return nil
}

// secretFor returns a secret of the caller's tenant; for a browser token,
// only one of its external user's.
func (s *Server) secretFor(p *principal, id string) (vault.Secret, error) {
	sec, err := s.store.Secret(p.tenant(), id)
	if err != nil {
		return vault.Secret{}, err
	}
	if p.browser() && sec.ExternalUserID != p.externalUser() {
		return vault.Secret{}, notYours("secret", id)
	}
	return sec, nil
}

func (s *Server) getSecret(w http.ResponseWriter, r *http.Request, p *principal) error {
	sec, err := s.secretFor(p, r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, sec)
	return nil
}

// rotateSecret stores a new value as version + 1. The resolver's cache for
// the tenant is dropped before the vault returns, so the next Resolve
// after this answer sees the new value.
func (s *Server) rotateSecret(w http.ResponseWriter, r *http.Request, p *principal) error {
	var in vault.RotateInput
	if err := decode(w, r, &in); err != nil {
		return redact(err, in.Value, in.RefreshToken)
	}
	sec, err := s.writer(p).RotateSecret(p.tenant(), r.PathValue("id"), in)
	if err != nil {
		return redact(err, in.Value, in.RefreshToken)
	}
	writeJSON(w, http.StatusOK, sec)
	return nil
}

// setDisabled revokes or restores a secret, effective for the very next
// resolution.
func (s *Server) setDisabled(disabled bool) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, p *principal) error {
		if err := emptyBody(w, r); err != nil {
			return err
		}
		sec, err := s.writer(p).SetDisabled(p.tenant(), r.PathValue("id"), disabled)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, sec)
		return nil
	}
}

// deleteSecret deletes a secret and its bindings.
func (s *Server) deleteSecret(w http.ResponseWriter, r *http.Request, p *principal) error {
	if err := s.writer(p).DeleteSecret(p.tenant(), r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
