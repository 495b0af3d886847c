package api

import (
	"errors"
	"net/http"

	"github.com/egressd/egressd/vault"
)

// BindingList is the answer of GET /api/v1/egress/bindings: a page of
// bindings in id order, and the cursor of the next page ("" after the
// last).
type BindingList struct {
	Bindings   []vault.Binding `json:"bindings"`
	NextCursor string          `json:"next_cursor"`
}

// createBinding attaches a secret of the tenant to one of its sandboxes or
// computers. Either id from another tenant answers 404.
func (s *Server) createBinding(w http.ResponseWriter, r *http.Request, p *principal) error {
	var in vault.BindingInput
	if err := decode(w, r, &in); err != nil {
		return err
	}
	b, err := s.writer(p).CreateBinding(p.tenant(), in)
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/api/v1/egress/bindings/"+b.ID)
	writeJSON(w, http.StatusCreated, b)
	return nil
}

// listBindings answers a page of the tenant's bindings, narrowed by the
// query's filters; a browser token sees only the bindings on its external
// user's sandboxes.
func (s *Server) listBindings(w http.ResponseWriter, r *http.Request, p *principal) error {
	q := r.URL.Query()
	pg, err := listPage(q)
	if err != nil {
		return err
	}
	f := vault.BindingFilter{
		ResourceID:   q.Get("resource_id"),
		ResourceType: vault.ResourceType(q.Get("resource_type")),
		SecretID:     q.Get("secret_id"),
	}
	if f.ResourceType != "" && !f.ResourceType.Valid() {
		return errorf(ErrBadRequest, "resource_type: unknown resource type %q (want sandbox or computer)", f.ResourceType)
	}
	if p.browser() {
		f.ExternalUserID = p.externalUser()
	}
	list, next, err := s.store.ListBindingsPage(p.tenant(), f, pg)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, BindingList{Bindings: list, NextCursor: next})
	return nil
}

func (s *Server) getBinding(w http.ResponseWriter, r *http.Request, p *principal) error {
	id := r.PathValue("id")
	b, err := s.store.Binding(p.tenant(), id)
	if err != nil {
		return err
	}
	if p.browser() {
		if _, err := s.sandboxFor(p, b.ResourceID); err != nil {
			if errors.Is(err, vault.ErrNotFound) || errors.Is(err, ErrNotFound) {
				return notYours("binding", id)
			}
			return err
		}
	}
	writeJSON(w, http.StatusOK, b)
	return nil
}

func (s *Server) deleteBinding(w http.ResponseWriter, r *http.Request, p *principal) error {
	if err := s.writer(p).DeleteBinding(p.tenant(), r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
