package vault

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"time"

	"github.com/egressd/egressd/vault/storage"
)

// OAuth connect state: flows (one per connect, found by their state) and
// per-tenant white-label overrides (oauth_overrides.go).
var (
	bOAuthFlows     = []byte("oauth_flows")     // tenant \0 flow id → storedFlow
	bOAuthStates    = []byte("oauth_states")    // sha256(state) → tenant \0 flow id
	bOAuthOverrides = []byte("oauth_overrides") // tenant \0 provider → storedOverride
	bOAuthFlowIDs   = []byte("oauth_flow_ids")  // flow id → tenant \0 flow id (the public connect page)
)

func init() {
	allBuckets = append(allBuckets, bOAuthFlows, bOAuthStates, bOAuthOverrides, bOAuthFlowIDs)
}

// The statuses of an OAuth flow.
const (
	FlowPending   = "pending"
	FlowCompleted = "completed"
	FlowFailed    = "failed"
	FlowExpired   = "expired"
)

// ErrStateUsed is a state that was already presented once: a state is
// single use.
var ErrStateUsed = errors.New("oauth state already used")

// ErrStateExpired is a state presented after its flow expired.
var ErrStateExpired = errors.New("oauth state expired")

// ErrUnknownState is a state that belongs to no flow.
var ErrUnknownState = errors.New("unknown oauth state")

// ErrConnectOpened is a connect link opened a second time: the first
// browser that opened it is the only one that can finish the flow.
var ErrConnectOpened = errors.New("this connect link was already opened in another browser")

// ErrWrongBrowser is a callback that does not carry the connect cookie of
// the browser that opened the flow's connect link (or a flow that has no
// connect link: its callback is the tenant's). The state is left unclaimed.
var ErrWrongBrowser = errors.New("this callback did not come from the browser that started the connection")

// ErrWrongUser is a tenant's completion whose asserted end-user is not
// the flow's. The state is left unclaimed.
var ErrWrongUser = errors.New("the end-user asserted does not match the flow's")

// OAuthFlow is one connect flow: what it will stamp on the secret it
// stores, and how it ended. It never holds a token, the state or the PKCE
// verifier.
type OAuthFlow struct {
	ID                  string       `json:"id"`
	TenantID            string       `json:"tenant_id"`
	Provider            string       `json:"provider"`
	Status              string       `json:"status"`
	SecretID            string       `json:"secret_id,omitempty"`
	Error               string       `json:"error,omitempty"`
	SecretName          string       `json:"secret_name"`
	Scope               Scope        `json:"scope"`
	Scopes              []string     `json:"scopes,omitempty"`
	ExposeAsEnv         string       `json:"expose_as_env,omitempty"`
	OwnerUserID         string       `json:"owner_user_id,omitempty"`
	WorkspaceID         string       `json:"workspace_id,omitempty"`
	ExternalUserID      string       `json:"external_user_id,omitempty"`
	ExternalWorkspaceID string       `json:"external_workspace_id,omitempty"`
	ResourceID          string       `json:"resource_id,omitempty"`
	ResourceType        ResourceType `json:"resource_type,omitempty"`
	RedirectURI         string       `json:"redirect_uri"`
	ClientID            string       `json:"client_id"`
	// Override is set when the tenant's white-label app started the flow.
	Override bool `json:"override"`
	// Actor started the flow; the secret is stored in its name.
	Actor     Actor      `json:"actor"`
	CreatedAt time.Time  `json:"created_at"`
	ExpiresAt time.Time  `json:"expires_at"`
	DoneAt    *time.Time `json:"done_at,omitempty"`
}

type storedFlow struct {
	OAuthFlow
	StateUsed bool    `json:"state_used"`
	Verifier  *sealed `json:"verifier,omitempty"`
	// AuthURL is the provider's authorize URL of a flow with a connect
	// link (egressd's own callback), sealed: it carries the state.
	AuthURL *sealed `json:"auth_url,omitempty"`
	// ConnectHash is the SHA-256 of the nonce cookie set on the browser
	// that first opened the connect link; set once.
	ConnectHash []byte `json:"connect_hash,omitempty"`
}

// OAuthFlowInput starts a flow. State and Verifier are secrets of the
// flow: the state is stored only as a hash, the verifier sealed. With
// AuthorizeURL set (the provider URL, sealed) the flow has a connect
// link: its browser is bound by OpenOAuthConnect, and only a callback
// from that browser can claim its state.
type OAuthFlowInput struct {
	Flow         OAuthFlow
	State        string
	Verifier     string
	AuthorizeURL string
}

func flowAD(tenantID, flowID string) []byte {
	return []byte("egressd/oauth-flow/v1\x00" + tenantID + "\x00" + flowID + "\x00verifier")
}

func authURLAD(tenantID, flowID string) []byte {
	return []byte("egressd/oauth-flow/v1\x00" + tenantID + "\x00" + flowID + "\x00auth_url")
}

// ClaimBy is who presents a state. With TenantID set it is a tenant
// forwarding code and state from its own callback: a state of another
// tenant is unknown, and the end-user the tenant asserts must be the
// flow's (ExternalUserID when the flow has one; else OwnerUserID when the
// flow has one; any id given must equal the flow's). With TenantID empty
// it is egressd's public callback: the flow must have a connect link and
// Cookies (the browser's connect nonces by flow id) must hold the nonce
// whose hash OpenOAuthConnect stored.
type ClaimBy struct {
	TenantID       string
	ExternalUserID string
	OwnerUserID    string
	Cookies        map[string]string
}

// check refuses a claim of row by b (ErrWrongUser, ErrWrongBrowser).
func (b ClaimBy) check(row *storedFlow) error {
	if b.TenantID != "" {
		if (row.ExternalUserID != "" || b.ExternalUserID != "") && b.ExternalUserID != row.ExternalUserID {
			return ErrWrongUser
		}
		if ((row.OwnerUserID != "" && row.ExternalUserID == "") || b.OwnerUserID != "") && b.OwnerUserID != row.OwnerUserID {
			return ErrWrongUser
		}
		return nil
	}
	nonce, ok := b.Cookies[row.ID]
	if !ok {
		return ErrWrongBrowser
	}
	sum := sha256.Sum256([]byte(nonce))
	if !row.boundTo(sum[:]) {
		return ErrWrongBrowser
	}
	return nil
}

// boundTo reports whether the flow's connect link is bound to the browser
// whose nonce hashes to nonceHash (compared in constant time).
func (row *storedFlow) boundTo(nonceHash []byte) bool {
	return len(row.ConnectHash) == sha256.Size && len(nonceHash) == sha256.Size &&
		subtle.ConstantTimeCompare(row.ConnectHash, nonceHash) == 1
}

// validState reports whether state has the form of a state this store
// hands out: 16 to 256 characters of the URL-safe base64 alphabet.
func validState(state string) bool {
	if len(state) < 16 || len(state) > 256 {
		return false
	}
	for i := 0; i < len(state); i++ {
		c := state[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func stateKey(state string) []byte {
	sum := sha256.Sum256([]byte("egressd/oauth-state/v1\x00" + state))
	return sum[:]
}

// CreateOAuthFlow stores a new pending flow. It sets ID, TenantID, Status
// and CreatedAt; ExpiresAt must be set.
func (s *Store) CreateOAuthFlow(tenantID string, in OAuthFlowInput) (OAuthFlow, error) {
	if !validState(in.State) {
		return OAuthFlow{}, invalid("state", "16 to 256 characters of [A-Za-z0-9_-]")
	}
	f := in.Flow
	if f.ExpiresAt.IsZero() {
		return OAuthFlow{}, invalid("expires_at", "required")
	}
	f.ID, f.TenantID, f.Status, f.CreatedAt, f.SecretID, f.Error, f.DoneAt = newID("oaf"), tenantID, FlowPending, s.stamp(), "", "", nil
	row := storedFlow{OAuthFlow: f}
	err := s.update("", func(tx storage.Tx) error {
		if _, err := txTenant(tx, tenantID); err != nil {
			return err
		}
		k, err := s.sealKey(tx)
		if err != nil {
			return err
		}
		row.Verifier, row.AuthURL = nil, nil
		if in.Verifier != "" {
			if row.Verifier, err = k.seal([]byte(in.Verifier), flowAD(tenantID, f.ID)); err != nil {
				return err
			}
		}
		if in.AuthorizeURL != "" {
			if row.AuthURL, err = k.seal([]byte(in.AuthorizeURL), authURLAD(tenantID, f.ID)); err != nil {
				return err
			}
		}
		if tx.Bucket(bOAuthStates).Get(stateKey(in.State)) != nil {
			return fmt.Errorf("%w: state collision", ErrConflict)
		}
		if err := putJSON(tx.Bucket(bOAuthFlows), key(tenantID, f.ID), &row); err != nil {
			return err
		}
		if err := tx.Bucket(bOAuthFlowIDs).Put([]byte(f.ID), key(tenantID, f.ID)); err != nil {
			return err
		}
		return tx.Bucket(bOAuthStates).Put(stateKey(in.State), key(tenantID, f.ID))
	})
	return f, err
}

// OAuthFlow returns one flow of the tenant.
func (s *Store) OAuthFlow(tenantID, id string) (OAuthFlow, error) {
	var row storedFlow
	err := s.view(func(tx storage.Tx) error {
		ok, err := getJSON(tx.Bucket(bOAuthFlows), key(tenantID, id), &row)
		if err == nil && !ok {
			err = notFound("id", "no oauth flow %q", id)
		}
		return err
	})
	return row.OAuthFlow, err
}

// ClaimOAuthState consumes a state: the first call for a pending, live
// flow marks the state used and returns the flow with its PKCE verifier
// (zero Value without PKCE). A state seen before answers ErrStateUsed (the
// flow is left as it is); one past its flow's expiry marks the flow
// expired and answers ErrStateExpired; an unknown one ErrUnknownState.
// by says who presents it (ClaimBy): a tenant asserting the end-user, or
// egressd's callback with the browser's connect cookies; a claim by
// another tenant answers ErrUnknownState, by the wrong end-user
// ErrWrongUser, from the wrong browser ErrWrongBrowser, and each leaves
// the state unclaimed. The state's form is checked and the state looked
// up read-only first: only a state of a live flow presented by the right
// party opens a write transaction (the public callback is
// unauthenticated).
func (s *Store) ClaimOAuthState(state string, by ClaimBy) (OAuthFlow, Value, error) {
	tenantID := by.TenantID
	if !validState(state) {
		return OAuthFlow{}, Value{}, ErrUnknownState
	}
	var row storedFlow
	var verifier Value
	var claimErr error
	err := s.backend.View(func(tx storage.Tx) error {
		k := tx.Bucket(bOAuthStates).Get(stateKey(state))
		if k == nil {
			claimErr = ErrUnknownState
			return nil
		}
		if ok, err := getJSON(tx.Bucket(bOAuthFlows), k, &row); err != nil || !ok || (tenantID != "" && row.TenantID != tenantID) {
			row = storedFlow{}
			claimErr = ErrUnknownState
			return err
		}
		if row.StateUsed || row.Status != FlowPending {
			claimErr = ErrStateUsed
		} else {
			claimErr = by.check(&row)
		}
		return nil
	})
	if err != nil || claimErr != nil {
		if err == nil {
			err = claimErr
		}
		return row.OAuthFlow, Value{}, err
	}
	now := s.now()
	err = s.backend.Update(func(tx storage.Tx) error {
		row, verifier, claimErr = storedFlow{}, Value{}, nil
		k := tx.Bucket(bOAuthStates).Get(stateKey(state))
		if k == nil {
			claimErr = ErrUnknownState
			return nil
		}
		fk := bytes.Clone(k)
		if ok, err := getJSON(tx.Bucket(bOAuthFlows), fk, &row); err != nil || !ok || (tenantID != "" && row.TenantID != tenantID) {
			row = storedFlow{}
			claimErr = ErrUnknownState
			return err
		}
		if row.StateUsed || row.Status != FlowPending {
			claimErr = ErrStateUsed
			return nil
		}
		if err := by.check(&row); err != nil {
			claimErr = err
			return nil
		}
		switch {
		case !now.Before(row.ExpiresAt):
			row.StateUsed, row.Status, row.Error, row.AuthURL = true, FlowExpired, "the state expired before the provider redirected back", nil
			t := s.stamp()
			row.DoneAt = &t
			claimErr = ErrStateExpired
			return putJSON(tx.Bucket(bOAuthFlows), fk, &row)
		}
		row.StateUsed, row.AuthURL = true, nil
		if row.Verifier != nil {
			v, err := s.keys.open(row.Verifier, flowAD(row.TenantID, row.ID))
			if err != nil {
				return err
			}
			verifier = NewValue(v)
		}
		return putJSON(tx.Bucket(bOAuthFlows), fk, &row)
	})
	if err == nil {
		err = claimErr
	}
	return row.OAuthFlow, verifier, err
}

// FinishOAuthFlow records how a claimed flow ended: completed with the
// secret it stored, or failed (or expired) with a message for the caller.
func (s *Store) FinishOAuthFlow(tenantID, id, status, secretID, msg string) (OAuthFlow, error) {
	var row storedFlow
	err := s.update("", func(tx storage.Tx) error {
		ok, err := getJSON(tx.Bucket(bOAuthFlows), key(tenantID, id), &row)
		if err != nil {
			return err
		}
		if !ok {
			return notFound("id", "no oauth flow %q", id)
		}
		if row.Status != FlowPending {
			return fmt.Errorf("%w: flow %s is %s", ErrConflict, id, row.Status)
		}
		t := s.stamp()
		row.Status, row.SecretID, row.Error, row.DoneAt, row.StateUsed, row.Verifier, row.AuthURL = status, secretID, msg, &t, true, nil, nil
		return putJSON(tx.Bucket(bOAuthFlows), key(tenantID, id), &row)
	})
	return row.OAuthFlow, err
}

// ExpireOAuthFlow marks a pending flow past its expiry as expired and
// returns it; any other flow is returned as it is. A flow whose state was
// already claimed (its code exchange is under way) is left pending: the
// exchange finishes it, completed or failed, so a stored token never
// belongs to a flow that says expired.
func (s *Store) ExpireOAuthFlow(tenantID, id string) (OAuthFlow, error) {
	var row storedFlow
	expire := func(tx storage.Tx) (bool, error) {
		ok, err := getJSON(tx.Bucket(bOAuthFlows), key(tenantID, id), &row)
		if err != nil {
			return false, err
		}
		if !ok {
			return false, notFound("id", "no oauth flow %q", id)
		}
		return row.Status == FlowPending && !row.StateUsed && !s.now().Before(row.ExpiresAt), nil
	}
	var due bool
	err := s.view(func(tx storage.Tx) error {
		var err error
		due, err = expire(tx)
		return err
	})
	if err != nil || !due {
		return row.OAuthFlow, err
	}
	err = s.update("", func(tx storage.Tx) error {
		due, err := expire(tx)
		if err != nil || !due {
			return err
		}
		t := s.stamp()
		row.Status, row.Error, row.DoneAt, row.StateUsed, row.Verifier, row.AuthURL = FlowExpired, "the flow expired before it completed", &t, true, nil, nil
		return putJSON(tx.Bucket(bOAuthFlows), key(tenantID, id), &row)
	})
	return row.OAuthFlow, err
}

// PruneOAuthFlows deletes flows (and their states) created before t.
func (s *Store) PruneOAuthFlows(before time.Time) (int, error) {
	n := 0
	err := s.backend.Update(func(tx storage.Tx) error {
		n = 0
		var dead [][]byte
		b := tx.Bucket(bOAuthFlows)
		if err := b.ForEach(func(k, v []byte) error {
			var row storedFlow
			if err := unmarshal(v, &row); err != nil {
				return err
			}
			if row.CreatedAt.Before(before) {
				dead = append(dead, bytes.Clone(k))
			}
			return nil
		}); err != nil {
			return err
		}
		set := map[string]bool{}
		for _, k := range dead {
			set[string(k)] = true
			if err := b.Delete(k); err != nil {
				return err
			}
			if _, id, ok := bytes.Cut(k, []byte{0}); ok {
				if err := tx.Bucket(bOAuthFlowIDs).Delete(id); err != nil {
					return err
				}
			}
		}
		sb := tx.Bucket(bOAuthStates)
		var states [][]byte
		sb.ForEach(func(k, v []byte) error {
			if set[string(v)] {
				states = append(states, bytes.Clone(k))
			}
			return nil
		})
		for _, k := range states {
			if err := sb.Delete(k); err != nil {
				return err
			}
		}
		n = len(dead)
		return nil
	})
	return n, err
}
