package oauth

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/egressd/egressd/vault"
)

// Regression: the token client must not follow a 307 from the token endpoint and
// replay the form (client_secret, code, code_verifier) to the new host.
func TestReviewOAuthFixTokenRedirectNotFollowed(t *testing.T) {
	var got atomic.Value
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		got.Store(r.PostForm.Encode())
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"error":"nope"}`))
	}))
	defer other.Close()
	prov := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+"/collect", http.StatusTemporaryRedirect)
	}))
	defer prov.Close()
	dir := t.TempDir()
	store, err := vault.Open(vault.Config{Path: filepath.Join(dir, "v.db"), MasterKey: vault.NewMasterKey(), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	pf := filepath.Join(dir, "p.json")
	raw, _ := json.Marshal(map[string]any{"providers": []map[string]any{{"name": "fake", "auth_url": prov.URL + "/a", "token_url": prov.URL + "/t",
		"allowed_hosts": []string{"api.fake.test"}, "pkce": true, "client_id": "op-id", "client_secret": "op-secret-value"}}})
	os.WriteFile(pf, raw, 0o600)
	cat, _ := NewCatalogue(pf)
	svc, _ := New(Config{Store: store, Catalogue: cat, PublicURL: "https://egressd.test"})
	tn, _, _ := store.CreateTenant("acme")
	st, err := svc.Start(context.Background(), vault.Actor{Kind: vault.ActorOperator, ID: "x"}, tn.ID, StartInput{Provider: "fake", ExternalUserID: "u1"})
	if err != nil {
		t.Fatal(err)
	}
	f, err := svc.Complete(context.Background(), "", "the-code", st.State, nil)
	if got.Load() != nil {
		t.Errorf("token request replayed to the redirect target: %v", got.Load())
	}
	if err == nil || f.Status != vault.FlowFailed {
		t.Errorf("a redirecting token endpoint: flow %s, err %v (want failed)", f.Status, err)
	}
	tr, ok := svc.cfg.HTTPClient.Transport.(*http.Transport)
	if !ok || tr.Proxy != nil {
		t.Errorf("default token client transport %T: want a dedicated *http.Transport with no Proxy", svc.cfg.HTTPClient.Transport)
	}
}
