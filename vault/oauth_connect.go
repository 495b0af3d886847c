package vault

import (
	"bytes"
	"crypto/sha256"

	"github.com/egressd/egressd/vault/storage"
)

// A flow's connect link (public, found by flow id alone): OAuthConnectFlow
// looks at it without changing anything (the connect page's GET, which
// link previews fetch too), OpenOAuthConnect binds it to a browser.

// connectLook finds the flow of a connect link and says whether the
// browser whose nonce hashes to nonceHash may open it: the flow must be
// pending, unclaimed, not expired and have a connect link, and be either
// not bound yet or bound to that same nonce. bound reports the latter.
func (s *Store) connectLook(tx storage.Tx, flowID string, nonceHash []byte, row *storedFlow) (fk []byte, bound bool, err error) {
	*row = storedFlow{}
	k := tx.Bucket(bOAuthFlowIDs).Get([]byte(flowID))
	if k == nil {
		return nil, false, notFound("id", "no oauth flow %q", flowID)
	}
	fk = bytes.Clone(k)
	ok, err := getJSON(tx.Bucket(bOAuthFlows), fk, row)
	switch {
	case err != nil:
		return nil, false, err
	case !ok:
		return nil, false, notFound("id", "no oauth flow %q", flowID)
	case row.StateUsed || row.Status != FlowPending:
		return nil, false, ErrStateUsed
	case row.AuthURL == nil:
		*row = storedFlow{} // no connect link: nothing to show about it
		return nil, false, notFound("id", "no oauth flow %q", flowID)
	case !s.now().Before(row.ExpiresAt):
		return nil, false, ErrStateExpired
	case row.ConnectHash != nil:
		if !row.boundTo(nonceHash) {
			return nil, false, ErrConnectOpened
		}
		return fk, true, nil
	}
	return fk, false, nil
}

// OAuthConnectFlow answers the flow of a connect link and whether the
// browser whose nonce hashes to nonceHash (nil: a browser that holds
// none) could open it now, as OpenOAuthConnect would, without changing
// anything. The errors are OpenOAuthConnect's; with ErrConnectOpened,
// ErrStateExpired or ErrStateUsed the flow is answered too (a flow without
// a connect link is ErrNotFound and answered zero).
func (s *Store) OAuthConnectFlow(flowID string, nonceHash []byte) (OAuthFlow, error) {
	var row storedFlow
	err := s.view(func(tx storage.Tx) error {
		_, _, err := s.connectLook(tx, flowID, nonceHash, &row)
		return err
	})
	return row.OAuthFlow, err
}

// OpenOAuthConnect binds a flow's connect link to the browser that first
// opens it: the flow must be pending, unclaimed, not expired and have a
// connect link; nonceHash (the SHA-256 of the browser's nonce cookie) is
// stored once. It answers the flow and the provider's authorize URL. The
// same browser opening it again (the same nonceHash) gets the same answer
// and changes nothing; another one answers ErrConnectOpened. An unknown
// flow, or one without a connect link, answers ErrNotFound; an expired
// one ErrStateExpired; a finished or claimed one ErrStateUsed (its sealed
// authorize URL is dropped once the state is claimed).
func (s *Store) OpenOAuthConnect(flowID string, nonceHash []byte) (OAuthFlow, string, error) {
	f, u, _, err := s.BindOAuthConnect(flowID, nonceHash, nonceHash)
	return f, u, err
}

// BindOAuthConnect is OpenOAuthConnect for a browser that presents the
// nonce hash presented and, if the flow is bound to no browser yet, is
// bound to fresh instead: a nonce minted at that moment, so that a value
// planted in the browser beforehand (a fixed session) never becomes the
// binding. bound reports that the flow was bound now, to fresh; else it
// was bound to presented already (the same browser again).
func (s *Store) BindOAuthConnect(flowID string, presented, fresh []byte) (f OAuthFlow, authURL string, bound bool, err error) {
	if len(presented) != sha256.Size || len(fresh) != sha256.Size {
		return OAuthFlow{}, "", false, invalid("nonce", "want a SHA-256")
	}
	var row storedFlow
	var again bool
	err = s.view(func(tx storage.Tx) error {
		var err error
		_, again, err = s.connectLook(tx, flowID, presented, &row)
		return err
	})
	if err != nil {
		return row.OAuthFlow, "", false, err
	}
	open := func() (string, error) {
		u, err := s.keys.open(row.AuthURL, authURLAD(row.TenantID, row.ID))
		return string(u), err
	}
	if again {
		u, err := open()
		if err != nil {
			return row.OAuthFlow, "", false, err
		}
		return row.OAuthFlow, u, false, nil
	}
	var u string
	err = s.update("", func(tx storage.Tx) error {
		fk, again, err := s.connectLook(tx, flowID, presented, &row)
		if err != nil {
			return err
		}
		if u, err = open(); err != nil || again {
			return err
		}
		row.ConnectHash, bound = bytes.Clone(fresh), true
		return putJSON(tx.Bucket(bOAuthFlows), fk, &row)
	})
	if err != nil {
		return row.OAuthFlow, "", false, err
	}
	return row.OAuthFlow, u, bound, nil
}
