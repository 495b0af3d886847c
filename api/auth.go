package api

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/egressd/egressd/vault"
)

// access is what kind of key a route admits.
type access uint8

const (
	// readAccess admits admin keys and browser tokens; a browser token
	// then sees only its external user's resources.
	readAccess access = iota
	// adminAccess admits admin keys only: every write, and the reads that
	// are about the whole tenant. A browser token gets 403.
	adminAccess
	// operatorAccess admits the operator key only: creating tenants and
	// granting them source addresses, which no tenant may do for itself
	// (a tenant claiming addresses another tenant's sandboxes use would
	// read their traffic in its own audit log).
	operatorAccess
	// publicAccess takes no bearer token: the request authenticates
	// itself (the OAuth callback, by its state). The handler gets a nil
	// principal and checks its own query.
	publicAccess
	// anyAccess admits every kind of key, the operator key too: reads
	// about the caller itself (whoami).
	anyAccess
)

// errOperatorOnly is how an operatorAccess route refuses another key.
const errOperatorOnly = "only the operator key may create tenants or set their source_prefixes"

// principal is who is calling: the key that authenticated the request.
type principal struct {
	key vault.APIKey
}

// tenant is the caller's tenant id ("" for the operator key).
func (p *principal) tenant() string { return p.key.TenantID }

// browser reports whether the caller holds a read-only browser token.
func (p *principal) browser() bool { return p.key.Kind == vault.KeyBrowser }

// externalUser is the external user a browser token is scoped to.
func (p *principal) externalUser() string { return p.key.ExternalUserID }

// writer is the store every admin write of p goes through: each audited
// write appends its admin row, naming p's key (API key, operator key or
// browser token, by id) as the actor, in the write's own transaction. A
// refused write leaves neither the change nor a row.
func (s *Server) writer(p *principal) *vault.Store {
	return s.store.As(vault.ActorOf(p.key))
}

// authenticate reads the bearer token and finds its key.
func (s *Server) authenticate(r *http.Request) (*principal, error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return nil, errMissingToken
	}
	scheme, token, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return nil, errorf(ErrUnauthorized, "want Authorization: Bearer <api key>")
	}
	token = strings.TrimSpace(token)
	if token == "" {
		return nil, errMissingToken
	}
	k, err := s.store.Authenticate(token)
	if errors.Is(err, vault.ErrUnauthenticated) {
		return nil, errorf(ErrUnauthorized, "unknown or expired token")
	}
	if err != nil {
		return nil, fmt.Errorf("authenticate: %w", err)
	}
	return &principal{key: k}, nil
}

// allow checks that the caller's kind of key may use a route of access a.
func (p *principal) allow(a access) error {
	switch p.key.Kind {
	case vault.KeyOperator:
		if a != operatorAccess && a != anyAccess {
			return errorf(ErrForbidden, "the operator key may only create tenants (POST /api/v1/tenants) and set their source_prefixes (PUT /api/v1/tenants/{id}/source_prefixes)")
		}
		return nil
	case vault.KeyAdmin:
		if a == operatorAccess {
			return errorf(ErrForbidden, errOperatorOnly)
		}
		return nil
	case vault.KeyBrowser:
		switch a {
		case readAccess, anyAccess:
			return nil
		case operatorAccess:
			return errorf(ErrForbidden, errOperatorOnly)
		}
		return errorf(ErrForbidden, "browser tokens are read-only")
	}
	return errorf(ErrForbidden, "unknown key kind")
}

// notYours is the answer when a browser token asks for a resource of
// another external user: the same 404, word for word, as the vault's for an
// id that does not exist.
func notYours(kind, id string) error {
	return fmt.Errorf("%s %q: %w", kind, id, ErrNotFound)
}

// sandboxFor returns the caller's sandbox id, or 404 if the tenant has no
// such sandbox or, for a browser token, it belongs to another external user.
func (s *Server) sandboxFor(p *principal, id string) (vault.Sandbox, error) {
	sbx, err := s.store.Sandbox(p.tenant(), id)
	if err != nil {
		return vault.Sandbox{}, err
	}
	if p.browser() && sbx.ExternalUserID != p.externalUser() {
		return vault.Sandbox{}, notYours("sandbox", id)
	}
	return sbx, nil
}
