package api

import (
	"fmt"
	"net/http"

	"github.com/egressd/egressd/resolver"
	"github.com/egressd/egressd/vault"
)

// Attribution is who a sandbox works for, stamped at creation and never
// changed: the ids the resolver's walk keys on.
type Attribution struct {
	OwnerUserID         string `json:"owner_user_id,omitempty"`
	WorkspaceID         string `json:"workspace_id,omitempty"`
	ExternalUserID      string `json:"external_user_id,omitempty"`
	ExternalWorkspaceID string `json:"external_workspace_id,omitempty"`
	ExternalProjectID   string `json:"external_project_id,omitempty"`
}

func attributionOf(x *vault.Sandbox) Attribution {
	return Attribution{x.OwnerUserID, x.WorkspaceID, x.ExternalUserID, x.ExternalWorkspaceID, x.ExternalProjectID}
}

// SandboxCreated is the answer of POST /api/v1/sandboxes (and computers):
// everything a platform needs to start the sandbox. ProxyToken, and the
// ProxyURL and proxy variables that carry it, are shown this once: the
// vault keeps only a hash.
type SandboxCreated struct {
	ID           string             `json:"id"`
	ResourceType vault.ResourceType `json:"resource_type"`
	Attribution  Attribution        `json:"attribution"`
	Sandbox      vault.Sandbox      `json:"sandbox"`
	ProxyToken   string             `json:"proxy_token"`
	ProxyURL     string             `json:"proxy_url"`
	CACertPEM    string             `json:"ca_cert_pem"`
	CABundlePath string             `json:"ca_bundle_path"`
	// Env maps each env var to its value in the sandbox: placeholders,
	// the proxy variables and the CA-trust variables.
	Env map[string]string `json:"env"`
	// Placeholders lists, for every secret name that resolves for the
	// sandbox now, its env var, placeholder, secret id and level.
	Placeholders []resolver.EnvEntry `json:"placeholders"`
}

// SandboxList is the answer of GET /api/v1/sandboxes (and computers): a
// page of sandboxes in id order, and the cursor of the next page (""
// after the last).
type SandboxList struct {
	Sandboxes  []vault.Sandbox `json:"sandboxes"`
	NextCursor string          `json:"next_cursor"`
}

// createSandbox registers a sandbox or computer. On /api/v1/computers (rt
// set) it creates computers only.
func (s *Server) createSandbox(rt vault.ResourceType) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, p *principal) error {
		f, err := envFormatOf(r)
		if err != nil {
			return err
		}
		var in vault.SandboxInput
		if err := decode(w, r, &in); err != nil {
			return err
		}
		if rt != "" {
			if in.ResourceType != "" && in.ResourceType != rt {
				return errorf(ErrBadRequest, "resource_type: this endpoint creates %ss only, use /api/v1/sandboxes for a %s", rt, in.ResourceType)
			}
			in.ResourceType = rt
		}
		sbx, token, err := s.writer(p).CreateSandbox(p.tenant(), in)
		if err != nil {
			return err
		}
		out, err := s.envOf(r, p, &sbx, token)
		if err != nil {
			// The token is lost with this answer: take the sandbox back so
			// that the failed request leaves nothing behind. The log keeps
			// both rows, the deletion marked as this rollback.
			undo := s.writer(p).WithAudit("", map[string]string{"rollback": "sandbox.created"})
			if derr := undo.DeleteSandbox(p.tenant(), sbx.ID); derr != nil {
				err = fmt.Errorf("%w (and removing the half-created sandbox failed: %v)", err, derr)
			}
			return err
		}
		base := "/api/v1/sandboxes/"
		if rt != "" {
			base = "/api/v1/computers/"
		}
		w.Header().Set("Location", base+sbx.ID)
		writeIssued(w, http.StatusCreated, f, &sbx, token, &out)
		return nil
	}
}

// writeIssued answers a sandbox with its new proxy token (shown this once)
// as JSON, or as its env in format f with the token in the proxy variables.
func writeIssued(w http.ResponseWriter, status int, f string, sbx *vault.Sandbox, token string, out *SandboxEnv) {
	w.Header().Set("Cache-Control", "no-store")
	if f != formatJSON {
		writeEnv(w, status, f, sbx.ID, out.Env)
		return
	}
	writeJSON(w, status, SandboxCreated{
		ID: sbx.ID, ResourceType: sbx.ResourceType, Attribution: attributionOf(sbx), Sandbox: *sbx,
		ProxyToken: token, ProxyURL: out.ProxyURL, CACertPEM: out.CACertPEM, CABundlePath: out.CABundlePath,
		Env: out.Env, Placeholders: out.Placeholders,
	})
}

// TokenInput is the optional body of POST /api/v1/sandboxes/{id}/token.
type TokenInput struct {
	// TokenTTL, if set, is how long the new token works ("24h", "7d" or
	// seconds); absent: it does not expire.
	TokenTTL vault.TTL `json:"token_ttl"`
}

// reissueToken gives a sandbox a new proxy token, shown once in the
// answer (the shape of the creation answer, or ?format=dotenv|shell). The
// old token stops at once, on open connections too.
func (s *Server) reissueToken(rt vault.ResourceType) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, p *principal) error {
		f, err := envFormatOf(r)
		if err != nil {
			return err
		}
		var in TokenInput
		if r.ContentLength != 0 {
			if err := decode(w, r, &in); err != nil {
				return err
			}
		}
		if _, err := s.resourceFor(p, r.PathValue("id"), rt); err != nil {
			return err
		}
		sbx, token, err := s.writer(p).ReissueSandboxToken(p.tenant(), r.PathValue("id"), in.TokenTTL)
		if err != nil {
			return err
		}
		out, err := s.envOf(r, p, &sbx, token)
		if err != nil {
			return err
		}
		writeIssued(w, http.StatusOK, f, &sbx, token, &out)
		return nil
	}
}

// resourceFor returns the caller's sandbox id of type rt (any type if rt
// is empty), or 404.
func (s *Server) resourceFor(p *principal, id string, rt vault.ResourceType) (vault.Sandbox, error) {
	sbx, err := s.sandboxFor(p, id)
	if err != nil {
		return vault.Sandbox{}, err
	}
	if rt != "" && sbx.ResourceType != rt {
		return vault.Sandbox{}, notYours(string(rt), id)
	}
	return sbx, nil
}

// listSandboxes answers a page of the tenant's sandboxes and computers
// (computers only on /api/v1/computers); a browser token sees only its
// external user's.
func (s *Server) listSandboxes(rt vault.ResourceType) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, p *principal) error {
		q := r.URL.Query()
		pg, err := listPage(q)
		if err != nil {
			return err
		}
		f := vault.SandboxFilter{
			ResourceType:        vault.ResourceType(q.Get("resource_type")),
			OwnerUserID:         q.Get("owner_user_id"),
			WorkspaceID:         q.Get("workspace_id"),
			ExternalUserID:      q.Get("external_user_id"),
			ExternalWorkspaceID: q.Get("external_workspace_id"),
			ExternalProjectID:   q.Get("external_project_id"),
		}
		if f.ResourceType != "" && !f.ResourceType.Valid() {
			return errorf(ErrBadRequest, "resource_type: unknown resource type %q (want sandbox or computer)", f.ResourceType)
		}
		empty := false
		if rt != "" {
			empty = f.ResourceType != "" && f.ResourceType != rt
			f.ResourceType = rt
		}
		if p.browser() {
			empty = empty || f.ExternalUserID != "" && f.ExternalUserID != p.externalUser()
			f.ExternalUserID = p.externalUser()
		}
		list, next, err := s.store.ListSandboxesPage(p.tenant(), f, pg)
		if err != nil {
			return err
		}
		if empty {
			// Asked for what the endpoint or the token never shows: none
			// (the cursor and filters were checked all the same).
			list, next = []vault.Sandbox{}, ""
		}
		writeJSON(w, http.StatusOK, SandboxList{Sandboxes: list, NextCursor: next})
		return nil
	}
}

func (s *Server) getSandbox(rt vault.ResourceType) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, p *principal) error {
		sbx, err := s.resourceFor(p, r.PathValue("id"), rt)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, sbx)
		return nil
	}
}

// updateSandbox changes what may change of a sandbox: its source_addrs
// (replaced whole; [] removes them). Addresses another sandbox claims
// answer 409 and change nothing.
func (s *Server) updateSandbox(rt vault.ResourceType) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, p *principal) error {
		var in vault.SandboxUpdate
		if err := decode(w, r, &in); err != nil {
			return err
		}
		id := r.PathValue("id")
		if _, err := s.resourceFor(p, id, rt); err != nil {
			return err
		}
		sbx, err := s.writer(p).UpdateSandbox(p.tenant(), id, in)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, sbx)
		return nil
	}
}

// deleteSandbox deletes a sandbox, its bindings, the secrets scoped to it
// and its placeholders; its proxy token stops working at once.
func (s *Server) deleteSandbox(rt vault.ResourceType) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, p *principal) error {
		id := r.PathValue("id")
		if rt != "" {
			if _, err := s.resourceFor(p, id, rt); err != nil {
				return err
			}
		}
		if err := s.writer(p).DeleteSandbox(p.tenant(), id); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
}
