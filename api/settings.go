package api

import (
	"net/http"

	"github.com/egressd/egressd/vault"
)

// getSettings answers the tenant's settings.
func (s *Server) getSettings(w http.ResponseWriter, r *http.Request, p *principal) error {
	t, err := s.store.Tenant(p.tenant())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, t.Settings)
	return nil
}

// patchSettings changes the settings the body names and answers the new
// settings. Turning allow_end_user_credentials off takes effect for the
// very next resolution: the vault drops the tenant's cached results first.
func (s *Server) patchSettings(w http.ResponseWriter, r *http.Request, p *principal) error {
	var in vault.SettingsPatch
	if err := decode(w, r, &in); err != nil {
		return err
	}
	st, err := s.store.UpdateSettings(p.tenant(), in)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, st)
	return nil
}
