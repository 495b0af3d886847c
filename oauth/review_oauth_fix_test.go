package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"golang.org/x/oauth2"

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
	f, err := svc.Complete(context.Background(), By{TenantID: tn.ID, ExternalUserID: "u1"}, "the-code", st.State, nil)
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
	// expiresIn is the token answer's expires_in: 0 means 3600, negative
	// none.
	expiresIn atomic.Int64
	// fail500 makes refresh requests answer 500.
	fail500 atomic.Bool
}

func (e *fixEnv) clock() time.Time {
	if t := e.now.Load(); t != nil {
		return *t
	}
	return time.Now()
}

// connect starts a flow of the fake provider for end-user user and
// completes it as the tenant asserting that user.
func (e *fixEnv) connect(t *testing.T, user string) vault.OAuthFlow {
	t.Helper()
	st, err := e.svc.Start(context.Background(), vault.Actor{Kind: vault.ActorOperator, ID: "x"}, e.tenant, StartInput{Provider: "fake", ExternalUserID: user})
	if err != nil {
		t.Fatal(err)
	}
	f, err := e.svc.Complete(context.Background(), By{TenantID: e.tenant, ExternalUserID: user}, "code", st.State, nil)
	if err != nil {
		t.Fatal(err)
	}
	return f
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
		if r.PostForm.Get("grant_type") == "refresh_token" && e.fail500.Load() {
			w.WriteHeader(500)
			return
		}
		if r.PostForm.Get("grant_type") == "refresh_token" && r.PostForm.Get("refresh_token") != "rt-good" {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(400)
			w.Write([]byte(`{"error":"invalid_grant"}`))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		ans := map[string]any{"access_token": "at-value-123456", "refresh_token": "rt-good", "token_type": "Bearer", "expires_in": 3600}
		switch n := e.expiresIn.Load(); {
		case n < 0:
			delete(ans, "expires_in")
		case n > 0:
			ans["expires_in"] = n
		}
		json.NewEncoder(w).Encode(ans)
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
		_, err := e.svc.Complete(context.Background(), By{TenantID: e.tenant, ExternalUserID: "u1"}, "code-1", st.State, nil)
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

// Regression: polls of unknown (or another tenant's, or finished) flows
// leave no waiter behind; the waiters of a pending flow go when the last
// one leaves; past MaxWaiters a poll is refused.
func TestReviewOAuthFixWaitersBounded(t *testing.T) {
	e := newFixEnv(t, false)
	for i := range 1000 {
		if _, err := e.svc.Wait(context.Background(), e.tenant, fmt.Sprintf("oaf_does_not_exist_%d", i), time.Second); err == nil {
			t.Fatal("unknown flow: no error")
		}
	}
	other, _, err := e.store.CreateTenant("other")
	if err != nil {
		t.Fatal(err)
	}
	st, err := e.svc.Start(context.Background(), vault.Actor{Kind: vault.ActorOperator, ID: "x"}, e.tenant, StartInput{Provider: "fake", ExternalUserID: "u1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Wait(context.Background(), other.ID, st.Flow.ID, time.Second); err == nil {
		t.Error("another tenant's flow: no error")
	}
	waiters := func() (int, int) {
		e.svc.mu.Lock()
		defer e.svc.mu.Unlock()
		return len(e.svc.waiters), e.svc.nwait
	}
	if n, _ := waiters(); n != 0 {
		t.Fatalf("waiters after polls of unknown or foreign ids: %d (want 0)", n)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.svc.Wait(ctx, e.tenant, st.Flow.ID, time.Minute)
		}()
	}
	for {
		if _, nw := waiters(); nw == 5 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if n, _ := waiters(); n != 1 {
		t.Errorf("five polls of one flow: %d entries (want 1)", n)
	}
	// The cap: fill it and the next poll is refused.
	e.svc.mu.Lock()
	e.svc.nwait += MaxWaiters
	e.svc.mu.Unlock()
	if _, err := e.svc.Wait(context.Background(), e.tenant, st.Flow.ID, time.Second); !errors.Is(err, ErrTooManyWaiters) {
		t.Errorf("poll past MaxWaiters: %v (want ErrTooManyWaiters)", err)
	}
	e.svc.mu.Lock()
	e.svc.nwait -= MaxWaiters
	e.svc.mu.Unlock()
	// Completing the flow wakes them all; their entry goes with them.
	if _, err := e.svc.Complete(context.Background(), By{TenantID: e.tenant, ExternalUserID: "u1"}, "code", st.State, nil); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	cancel()
	if n, nw := waiters(); n != 0 || nw != 0 {
		t.Errorf("after the polls ended: %d entries, %d counted (want 0, 0)", n, nw)
	}
	// A finished flow answers at once and leaves nothing.
	if f, err := e.svc.Wait(context.Background(), e.tenant, st.Flow.ID, time.Minute); err != nil || f.Status != vault.FlowCompleted {
		t.Errorf("poll of a completed flow: %s, %v", f.Status, err)
	}
	if n, _ := waiters(); n != 0 {
		t.Errorf("after a poll of a finished flow: %d entries", n)
	}
}

// Regression: a refresh answer without expires_in gives the token
// DefaultLifetime (not "never expires"); a lifetime under RefreshWindow is
// used until ShortRefreshWindow before it ends, not refreshed per request.
func TestReviewOAuthFixRefreshExpiry(t *testing.T) {
	e := newFixEnv(t, false)
	t0 := time.Now()
	e.now.Store(&t0)
	f := e.connect(t, "u1")
	sec, err := e.store.Secret(e.tenant, f.SecretID)
	if err != nil {
		t.Fatal(err)
	}
	// No expires_in on refresh.
	e.expiresIn.Store(-1)
	t1 := t0.Add(2 * time.Hour)
	e.now.Store(&t1)
	out, _, err := e.svc.Refresh(context.Background(), sec)
	if err != nil {
		t.Fatal(err)
	}
	if out.ExpiresAt == nil || !out.ExpiresAt.Equal(t1.Add(DefaultLifetime).UTC()) {
		t.Fatalf("refresh without expires_in: expires_at %v (want now+%v)", out.ExpiresAt, DefaultLifetime)
	}
	// A 20 s lifetime (the token library dates it by the real clock): used
	// as it is until 5 s before it ends.
	e.expiresIn.Store(20)
	e.now.Store(nil)
	past := time.Now().Add(-time.Minute)
	if out, err = e.store.RotateSecret(e.tenant, out.ID, vault.RotateInput{Value: "old", ExpiresAt: &past}); err != nil {
		t.Fatal(err)
	}
	hits := e.hits.Load()
	if out, _, err = e.svc.Refresh(context.Background(), out); err != nil {
		t.Fatal(err)
	}
	if e.hits.Load() != hits+1 || out.ExpiresAt == nil || out.ExpiresAt.Sub(out.UpdatedAt) > 21*time.Second {
		t.Fatalf("refresh to a 20 s token: %d calls, expires_at %v, updated_at %v", e.hits.Load()-hits, out.ExpiresAt, out.UpdatedAt)
	}
	exp := *out.ExpiresAt
	for _, d := range []time.Duration{19 * time.Second, 15 * time.Second, 10 * time.Second, 6 * time.Second} {
		now := exp.Add(-d)
		e.now.Store(&now)
		if NeedsRefresh(out, now) {
			t.Errorf("a 20 s token %v before its expiry needs a refresh", d)
		}
		if _, _, err := e.svc.Refresh(context.Background(), out); err != nil {
			t.Fatal(err)
		}
	}
	if n := e.hits.Load() - hits; n != 1 {
		t.Errorf("a 20 s token used until 6 s before its expiry: %d token requests (want 1)", n)
	}
	if !NeedsRefresh(out, exp.Add(-4*time.Second)) {
		t.Error("a 20 s token 4 s before its expiry does not need a refresh")
	}
}

// Regression: a token is refreshed with the app that issued it (marked on
// the secret at completion), not the one in force now; when that app is
// gone the refresh fails with a clear reason.
func TestReviewOAuthFixRefreshIssuingApp(t *testing.T) {
	e := newFixEnv(t, false)
	f := e.connect(t, "u1")
	if _, err := e.store.PutOAuthOverride(e.tenant, "fake", vault.OAuthOverrideInput{ClientID: "tenant-id", ClientSecret: "tenant-secret", CallbackURL: "https://t.example/cb"}); err != nil {
		t.Fatal(err)
	}
	sec, _ := e.store.Secret(e.tenant, f.SecretID)
	if sec.Metadata[ClientMetadataKey] != "operator:op-id" {
		t.Fatalf("issuing app marker %q", sec.Metadata[ClientMetadataKey])
	}
	later := time.Now().Add(2 * time.Hour)
	e.now.Store(&later)
	if _, _, err := e.svc.Refresh(context.Background(), sec); err != nil {
		t.Fatal(err)
	}
	e.mu.Lock()
	last := e.seenID[len(e.seenID)-1]
	e.mu.Unlock()
	if last != "op-id" {
		t.Errorf("the token issued to op-id was refreshed with client_id %q", last)
	}
	// Connected with the override, which is then removed: refused, clearly.
	f2 := e.connect(t, "u2")
	sec2, _ := e.store.Secret(e.tenant, f2.SecretID)
	if sec2.Metadata[ClientMetadataKey] != "override:tenant-id" {
		t.Fatalf("issuing app marker %q", sec2.Metadata[ClientMetadataKey])
	}
	if err := e.store.DeleteOAuthOverride(e.tenant, "fake"); err != nil {
		t.Fatal(err)
	}
	hits := e.hits.Load()
	later2 := later.Add(2 * time.Hour)
	e.now.Store(&later2)
	_, _, err := e.svc.Refresh(context.Background(), sec2)
	if !errors.Is(err, ErrRefresh) || !strings.Contains(err.Error(), "no longer configured") {
		t.Errorf("refresh after the issuing override was removed: %v", err)
	}
	if e.hits.Load() != hits {
		t.Error("the provider was called with another app's credentials")
	}
}

// Regression: only a secret stored by a completed connect (marked with its
// issuing app) is refreshed; a failed refresh is not retried at every
// request (back-off from 1 s, doubling), and one the provider answered
// invalid_grant for not until the secret is rotated.
func TestReviewOAuthFixRefreshBackoff(t *testing.T) {
	e := newFixEnv(t, false)
	t0 := time.Now()
	e.now.Store(&t0)
	past := t0.Add(-time.Hour)
	// The vault refuses reserved metadata from ordinary writers; a secret
	// that carries the provider key but no issuing-app mark (older data, or a
	// writer allowed reserved keys) must still not be refreshed.
	res, err := e.store.WithReservedMetadata().UpsertSecret(e.tenant, vault.SecretInput{Name: "X", Value: "v", Type: SecretType, Scope: vault.ScopeTenant,
		AllowedHosts: []string{"anything.example"}, Metadata: map[string]string{MetadataKey: "fake"}, RefreshToken: "tenant-chosen", ExpiresAt: &past})
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		_, _, err := e.svc.Refresh(context.Background(), res.Secret)
		if !errors.Is(err, ErrRefresh) || !strings.Contains(err.Error(), "not stored by an OAuth connect") {
			t.Fatalf("unmarked secret: %v", err)
		}
	}
	if n := e.hits.Load(); n != 0 {
		t.Errorf("an oauth_token secret not stored by a connect: %d calls to the provider", n)
	}
	// A connected secret whose refresh token the provider refuses.
	f := e.connect(t, "u1")
	sec, err := e.store.RotateSecret(e.tenant, f.SecretID, vault.RotateInput{Value: "old", RefreshToken: "rt-dead", ExpiresAt: &past})
	if err != nil {
		t.Fatal(err)
	}
	hits := e.hits.Load()
	for i := range 10 {
		now := t0.Add(time.Duration(i) * time.Hour)
		e.now.Store(&now)
		_, _, err := e.svc.Refresh(context.Background(), sec)
		if !errors.Is(err, ErrRefresh) || !strings.Contains(err.Error(), "invalid_grant") {
			t.Fatalf("dead refresh token: %v", err)
		}
	}
	if n := e.hits.Load() - hits; n != 1 {
		t.Errorf("invalid_grant: %d calls to the provider (want 1 until rotated)", n)
	}
	// Rotated: tried again.
	if sec, err = e.store.RotateSecret(e.tenant, f.SecretID, vault.RotateInput{Value: "old", RefreshToken: "rt-good", ExpiresAt: &past}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.svc.Refresh(context.Background(), sec); err != nil {
		t.Fatalf("after rotation: %v", err)
	}
	if sec, err = e.store.RotateSecret(e.tenant, f.SecretID, vault.RotateInput{Value: "old", ExpiresAt: &past}); err != nil {
		t.Fatal(err)
	}
	// A provider failing: back-off 1 s, 2 s, ...
	e.fail500.Store(true)
	hits = e.hits.Load()
	base := t0.Add(100 * time.Hour)
	for _, c := range []struct {
		at   time.Duration
		hits int32
	}{{0, 1}, {0, 1}, {500 * time.Millisecond, 1}, {1100 * time.Millisecond, 2}, {2 * time.Second, 2}, {3200 * time.Millisecond, 3}, {6 * time.Second, 3}, {7300 * time.Millisecond, 4}} {
		now := base.Add(c.at)
		e.now.Store(&now)
		if _, _, err := e.svc.Refresh(context.Background(), sec); !errors.Is(err, ErrRefresh) {
			t.Fatalf("failing provider: %v", err)
		}
		if n := e.hits.Load() - hits; n != c.hits {
			t.Errorf("at +%v: %d calls to the provider (want %d)", c.at, n, c.hits)
		}
	}
	// The provider recovers: the next try after the back-off succeeds.
	e.fail500.Store(false)
	now := base.Add(time.Hour)
	e.now.Store(&now)
	if _, _, err := e.svc.Refresh(context.Background(), sec); err != nil {
		t.Errorf("after the provider recovered: %v", err)
	}
}

// The provider's error text comes from anyone's redirect: it is stored and
// logged cut short and without control characters.
func TestProviderErrorBounded(t *testing.T) {
	e := ProviderError{Code: strings.Repeat("c", 500), Description: "line1\nFORGED log line\r\n" + strings.Repeat("é", 400)}
	msg := e.Error()
	if len(msg) > 350 || strings.ContainsAny(msg, "\r\n") {
		t.Fatalf("%d bytes: %q", len(msg), msg)
	}
	if !utf8.ValidString(msg) {
		t.Fatal("cut inside a rune")
	}
}

// Regression: a provider that echoes the refresh token, code or client
// secret it was sent in its error description does not put it in the
// message (logged, stored on the flow, answered), even where the
// description is cut short inside the value.
func TestExchangeMessageRedactsSent(t *testing.T) {
	const rt, secret = "rt-secret-value-123456", "client-secret-abcdef"
	for _, desc := range []string{
		"refresh token " + rt + " is revoked (client " + secret + ")",
		strings.Repeat("x", 190) + rt,
	} {
		err := &oauth2.RetrieveError{Response: &http.Response{StatusCode: 400}, ErrorCode: "invalid_grant", ErrorDescription: desc}
		msg := exchangeMessage(err, rt, secret)
		if strings.Contains(msg, rt[:8]) || strings.Contains(msg, secret[:8]) || !strings.Contains(msg, "invalid_grant") {
			t.Errorf("%q", msg)
		}
	}
}
