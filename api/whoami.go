package api

import (
	"net/http"
	"time"

	"github.com/egressd/egressd/vault"
)

// The key kinds of GET /api/v1/whoami.
const (
	WhoamiAPIKey       = "api_key"
	WhoamiBrowserToken = "browser_token"
	WhoamiOperator     = "operator"
)

// Whoami is the answer of GET /api/v1/whoami: who the bearer token is, so
// a dashboard can show it and hide the controls the API would refuse. It
// never holds the token.
type Whoami struct {
	// TenantID and TenantName are the key's tenant (empty for the
	// operator key).
	TenantID   string `json:"tenant_id,omitempty"`
	TenantName string `json:"tenant_name,omitempty"`
	// KeyID is the key's id, as audit rows name it (actor_id).
	KeyID string `json:"key_id"`
	// KeyKind is WhoamiAPIKey, WhoamiBrowserToken or WhoamiOperator.
	KeyKind string `json:"key_kind"`
	// ExternalUserID is the one external user a browser token sees.
	ExternalUserID string `json:"external_user_id,omitempty"`
	// ReadOnly is set for browser tokens: every write answers 403.
	ReadOnly  bool       `json:"read_only"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

// whoami answers who the caller is. Every kind of key may ask.
func (s *Server) whoami(w http.ResponseWriter, _ *http.Request, p *principal) error {
	out := Whoami{KeyID: p.key.ID, ExternalUserID: p.key.ExternalUserID, ExpiresAt: p.key.ExpiresAt}
	switch p.key.Kind {
	case vault.KeyAdmin:
		out.KeyKind = WhoamiAPIKey
	case vault.KeyBrowser:
		out.KeyKind, out.ReadOnly = WhoamiBrowserToken, true
	case vault.KeyOperator:
		out.KeyKind = WhoamiOperator
	default:
		return errorf(ErrForbidden, "unknown key kind")
	}
	if p.tenant() != "" {
		t, err := s.store.Tenant(p.tenant())
		if err != nil {
			return err
		}
		out.TenantID, out.TenantName = t.ID, t.Name
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
