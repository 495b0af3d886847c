package oauth

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/egressd/egressd/vault"
)

// The browser key of the connect page: its form, and the nonce derived
// from it: the same key opens again, a bad key binds nothing, another key
// is refused; the nonce is the callback's cookie and is not the key.
func TestConnectBrowserKey(t *testing.T) {
	e := newFixEnv(t, false)
	st, err := e.svc.Start(context.Background(), vault.Actor{}, e.tenant, StartInput{Provider: "fake", ExternalUserID: "eu1"})
	if err != nil {
		t.Fatal(err)
	}
	id := st.Flow.ID
	k := NewBrowserKey()
	if !ValidBrowserKey(k) || ValidBrowserKey(k[1:]) || ValidBrowserKey(k[1:]+"=") || ValidBrowserKey("") {
		t.Fatalf("key form: %q", k)
	}
	if _, err := e.svc.OpenConnect(id, "short"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad key: %v", err)
	}
	if c, err := e.svc.ConnectFlow(id, ""); err != nil || c.Flow.ID != id || !c.Secure || c.MaxAge <= 0 {
		t.Fatalf("look after a bad key: %+v %v", c, err)
	}
	c, err := e.svc.OpenConnect(id, k)
	if err != nil || c.Nonce == "" || c.Nonce == k || c.Nonce == c.Key || FormToken(c.Key) == c.Key || FormToken(c.Key) == c.Nonce ||
		!strings.HasPrefix(c.ProviderURL, "https://") && !strings.HasPrefix(c.ProviderURL, "http://") {
		t.Fatalf("open: %+v %v", c, err)
	}
	// The flow is bound to a key minted as it was bound, not to the
	// presented one (which may have been planted in the browser).
	if !ValidBrowserKey(c.Key) || c.Key == k {
		t.Fatalf("bound to the presented key %q", c.Key)
	}
	if _, err := e.svc.OpenConnect(id, k); !errors.Is(err, vault.ErrConnectOpened) {
		t.Fatalf("open again with the presented key: %v", err)
	}
	again, err := e.svc.OpenConnect(id, c.Key)
	if err != nil || again.Key != c.Key || again.Nonce != c.Nonce || again.ProviderURL != c.ProviderURL {
		t.Fatalf("open again: %v", err)
	}
	if _, err := e.svc.ConnectFlow(id, c.Key); err != nil {
		t.Fatalf("look by the same browser: %v", err)
	}
	if _, err := e.svc.OpenConnect(id, NewBrowserKey()); !errors.Is(err, vault.ErrConnectOpened) {
		t.Fatalf("another browser: %v", err)
	}
	if _, err := e.svc.ConnectFlow(id, ""); !errors.Is(err, vault.ErrConnectOpened) {
		t.Fatalf("look without a key: %v", err)
	}
	if e.svc.PublicURL() != "https://egressd.test" {
		t.Fatal(e.svc.PublicURL())
	}
}
