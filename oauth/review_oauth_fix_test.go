package oauth

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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

type fixEnv struct {
	store  *vault.Store
	svc    *Service
	tenant string
	now    atomic.Pointer[time.Time]
	block  chan struct{} // token endpoint waits on it when non-nil
	hits   atomic.Int32
	mu     sync.Mutex
	seenID []string // client_id of each token request
}

func (e *fixEnv) clock() time.Time {
	if t := e.now.Load(); t != nil {
		return *t
	}
	return time.Now()
}

func newFixEnv(t *testing.T, block bool) *fixEnv {
	e := &fixEnv{}
	if block {
		e.block = make(chan struct{})
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		e.hits.Add(1)
		e.mu.Lock()
		e.seenID = append(e.seenID, r.PostForm.Get("client_id"))
		e.mu.Unlock()
		if e.block != nil && r.PostForm.Get("grant_type") == "authorization_code" {
			<-e.block
		}
		if r.PostForm.Get("grant_type") == "refresh_token" && r.PostForm.Get("refresh_token") != "rt-good" {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(400)
			w.Write([]byte(`{"error":"invalid_grant"}`))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"access_token": "at-value-123456", "refresh_token": "rt-good", "token_type": "Bearer", "expires_in": 3600})
	}))
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	var err error
	e.store, err = vault.Open(vault.Config{Path: filepath.Join(dir, "v.db"), MasterKey: vault.NewMasterKey(), NoSync: true, Now: e.clock})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.store.Close() })
	pf := filepath.Join(dir, "p.json")
	raw, _ := json.Marshal(map[string]any{"providers": []map[string]any{{"name": "fake", "auth_url": srv.URL + "/a", "token_url": srv.URL + "/t",
		"allowed_hosts": []string{"api.fake.test"}, "refresh": true, "pkce": true, "client_id": "op-id", "client_secret": "op-secret"}}})
	os.WriteFile(pf, raw, 0o600)
	cat, err := NewCatalogue(pf)
	if err != nil {
		t.Fatal(err)
	}
	e.svc, err = New(Config{Store: e.store, Catalogue: cat, PublicURL: "https://egressd.test", Now: e.clock})
	if err != nil {
		t.Fatal(err)
	}
	tn, _, err := e.store.CreateTenant("acme")
	if err != nil {
		t.Fatal(err)
	}
	e.tenant = tn.ID
	return e
}

// Regression: a poll after the flow's expiry, while its claimed state's
// exchange is under way, leaves it pending; the exchange then completes it
// with the secret it stored.
func TestReviewOAuthFixClaimedFlowNotExpired(t *testing.T) {
	e := newFixEnv(t, true)
	t0 := time.Now()
	e.now.Store(&t0)
	st, err := e.svc.Start(context.Background(), vault.Actor{Kind: vault.ActorOperator, ID: "x"}, e.tenant, StartInput{Provider: "fake", ExternalUserID: "u1"})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := e.svc.Complete(context.Background(), "", "code-1", st.State, nil)
		done <- err
	}()
	for e.hits.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	t1 := t0.Add(DefaultFlowTTL + time.Second) // the poll comes after the expiry
	e.now.Store(&t1)
	f, err := e.svc.Flow(e.tenant, st.Flow.ID)
	if err != nil || f.Status != vault.FlowPending {
		t.Errorf("flow polled during its exchange: %s, %v (want pending)", f.Status, err)
	}
	close(e.block)
	if err := <-done; err != nil {
		t.Fatalf("Complete: %v", err)
	}
	secs, _ := e.store.ListSecrets(e.tenant, vault.SecretFilter{})
	f2, _ := e.svc.Flow(e.tenant, st.Flow.ID)
	if f2.Status != vault.FlowCompleted || len(secs) != 1 || f2.SecretID != secs[0].ID {
		t.Errorf("after the exchange: flow %s secret_id=%q, %d secret(s) stored (want completed with the one stored)", f2.Status, f2.SecretID, len(secs))
	}
	// An unclaimed flow past its expiry is still expired by a poll.
	st2, err := e.svc.Start(context.Background(), vault.Actor{Kind: vault.ActorOperator, ID: "x"}, e.tenant, StartInput{Provider: "fake", ExternalUserID: "u2"})
	if err != nil {
		t.Fatal(err)
	}
	t2 := t1.Add(DefaultFlowTTL + time.Second)
	e.now.Store(&t2)
	if f3, err := e.svc.Flow(e.tenant, st2.Flow.ID); err != nil || f3.Status != vault.FlowExpired {
		t.Errorf("unclaimed flow past its expiry: %s, %v (want expired)", f3.Status, err)
	}
}
