package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/egressd/egressd/internal/pgtest"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/egressd/egressd/vault"
	"github.com/egressd/egressd/vault/pgstore"
	"github.com/egressd/egressd/vault/storage"
)

// rotatingProvider is a loopback OAuth provider that rotates refresh
// tokens as real ones do: each refresh token is good for one refresh,
// which answers a new access token and the next refresh token; a refresh
// token used a second time is refused (invalid_grant) and, as providers
// with reuse detection do, revokes the token family (the newest refresh
// token is refused from then on too). So a double refresh is fatal here.
type rotatingProvider struct {
	url   string
	delay time.Duration // each refresh answers after it

	mu      sync.Mutex
	current string // the refresh token it takes next; "" once revoked
	issued  int    // refreshes answered

	refreshes atomic.Int32 // refresh requests received
	reused    atomic.Int32 // refused: a refresh token used again
}

const (
	rpCodeLifetime    = 3600      // expires_in of the code exchange
	rpRefreshLifetime = 24 * 3600 // expires_in of a refresh
)

func rpAccess(n int) string  { return fmt.Sprintf("at-%d-a1b2c3d4", n) }
func rpRefresh(n int) string { return fmt.Sprintf("rt-%d-e5f6a7b8", n) }

func newRotatingProvider(t *testing.T, delay time.Duration) *rotatingProvider {
	p := &rotatingProvider{delay: delay}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		w.Header().Set("Content-Type", "application/json")
		var at, rt string
		life := rpCodeLifetime
		switch r.PostForm.Get("grant_type") {
		case "authorization_code":
			p.mu.Lock()
			at, rt, p.current = rpAccess(0), rpRefresh(1), rpRefresh(1)
			p.mu.Unlock()
		case "refresh_token":
			p.refreshes.Add(1)
			time.Sleep(p.delay)
			p.mu.Lock()
			if p.current == "" || r.PostForm.Get("refresh_token") != p.current {
				p.current = "" // reuse: the family is revoked
				p.mu.Unlock()
				p.reused.Add(1)
				w.WriteHeader(400)
				w.Write([]byte(`{"error":"invalid_grant","error_description":"refresh token already used"}`))
				return
			}
			p.issued++
			at, rt, life = rpAccess(p.issued), rpRefresh(p.issued+1), rpRefreshLifetime
			p.current = rt
			p.mu.Unlock()
		default:
			w.WriteHeader(400)
			w.Write([]byte(`{"error":"unsupported_grant_type"}`))
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"access_token": at, "refresh_token": rt, "token_type": "Bearer", "expires_in": life})
	}))
	t.Cleanup(srv.Close)
	p.url = srv.URL
	return p
}

func (p *rotatingProvider) catalogue(t *testing.T) *Catalogue {
	t.Helper()
	pf := filepath.Join(t.TempDir(), "providers.json")
	raw, _ := json.Marshal(map[string]any{"providers": []map[string]any{{"name": "rot", "auth_url": p.url + "/a", "token_url": p.url + "/t",
		"allowed_hosts": []string{"api.rot.test"}, "refresh": true, "pkce": true, "client_id": "op-id", "client_secret": "op-secret"}}})
	if err := os.WriteFile(pf, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	cat, err := NewCatalogue(pf)
	if err != nil {
		t.Fatal(err)
	}
	return cat
}

// replicas are n egressd replicas as far as refresh goes: each its own
// oauth.Service (its single flight, its back-off) on its own vault.Store,
// the stores sharing a backend (or, in-process, one Store).
type replicas struct {
	prov   *rotatingProvider
	stores []*vault.Store
	svcs   []*Service
	tenant string
	secret vault.Secret // as connected, then made to expire soon
	clock  *atomic.Pointer[time.Time]
}

// testClock is the clock of the stores and services: the time c holds,
// else the real one.
func testClock(c *atomic.Pointer[time.Time]) func() time.Time {
	return func() time.Time {
		if t := c.Load(); t != nil {
			return *t
		}
		return time.Now()
	}
}

func (r *replicas) now() time.Time { return testClock(r.clock)() }

// newReplicas builds a service per store, connects one account through the
// first (stored: access token 0, refresh token 1, an hour to live), and
// moves the clock (the stores' too) to 30 s before its expiry: within
// RefreshWindow.
func newReplicas(t *testing.T, prov *rotatingProvider, stores []*vault.Store, services int, clock *atomic.Pointer[time.Time]) *replicas {
	t.Helper()
	r := &replicas{prov: prov, stores: stores, clock: clock}
	cat := prov.catalogue(t)
	for i := range services {
		svc, err := New(Config{Store: stores[i%len(stores)], Catalogue: cat, PublicURL: "https://egressd.test", Now: r.now})
		if err != nil {
			t.Fatal(err)
		}
		r.svcs = append(r.svcs, svc)
	}
	tn, _, err := stores[0].CreateTenant("acme")
	if err != nil {
		t.Fatal(err)
	}
	r.tenant = tn.ID
	ctx := context.Background()
	st, err := r.svcs[0].Start(ctx, vault.Actor{Kind: vault.ActorOperator, ID: "t"}, r.tenant, StartInput{Provider: "rot", ExternalUserID: "u1"})
	if err != nil {
		t.Fatal(err)
	}
	f, err := r.svcs[0].Complete(ctx, By{TenantID: r.tenant, ExternalUserID: "u1"}, "code", st.State, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.secret, err = stores[0].Secret(r.tenant, f.SecretID); err != nil {
		t.Fatal(err)
	}
	if r.secret.ExpiresAt == nil {
		t.Fatal("connected token has no expiry")
	}
	later := r.secret.ExpiresAt.Add(-30 * time.Second)
	r.clock.Store(&later)
	if !NeedsRefresh(r.secret, later) {
		t.Fatal("the token does not need a refresh 30 s before its expiry")
	}
	return r
}

// refreshAll has caller i refresh through service i%len(svcs), all at
// once, and returns their errors and tokens.
func (r *replicas) refreshAll(callers int) ([]error, []vault.Value, []vault.Secret) {
	errs := make([]error, callers)
	vals := make([]vault.Value, callers)
	secs := make([]vault.Secret, callers)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range callers {
		svc := r.svcs[i%len(r.svcs)]
		wg.Go(func() {
			<-start
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			secs[i], vals[i], errs[i] = svc.Refresh(ctx, r.secret)
		})
	}
	close(start)
	wg.Wait()
	return errs, vals, secs
}

// checkOnce checks that the callers' refresh made exactly one token
// request, that each caller got the new access token, and that the store
// holds it with the rotated refresh token. Tokens are compared, never
// printed.
func (r *replicas) checkOnce(t *testing.T, errs []error, vals []vault.Value, secs []vault.Secret) {
	t.Helper()
	if n, reused := r.prov.refreshes.Load(), r.prov.reused.Load(); n != 1 || reused != 0 {
		t.Errorf("%d callers: %d token requests reached the provider, %d with a refresh token used already (want 1, 0)", len(errs), n, reused)
	}
	for i := range errs {
		switch {
		case errs[i] != nil:
			t.Errorf("caller %d: %v", i, errs[i])
		case !vals[i].Equal([]byte(rpAccess(1))):
			t.Errorf("caller %d: not the refreshed access token", i)
		case secs[i].Version != r.secret.Version+1:
			t.Errorf("caller %d: version %d (want %d)", i, secs[i].Version, r.secret.Version+1)
		}
	}
	for i, s := range r.stores {
		var value, rt vault.Value
		var version int
		err := s.Read(func(rd *vault.Reader) error {
			var err error
			value, rt, version, err = rd.OpenValue(r.tenant, r.secret.ID)
			return err
		})
		switch {
		case err != nil:
			t.Errorf("store %d: %v", i, err)
		case version != r.secret.Version+1 || !value.Equal([]byte(rpAccess(1))):
			t.Errorf("store %d: version %d, stored access token the refreshed one: %v (want version %d, true)", i, version, value.Equal([]byte(rpAccess(1))), r.secret.Version+1)
		case !rt.Equal([]byte(rpRefresh(2))):
			t.Errorf("store %d: the stored refresh token is not the rotated one", i)
		}
	}
	// And the rotated one works: the next refresh (a day later) is good.
	next := r.now().Add(rpRefreshLifetime * time.Second)
	r.clock.Store(&next)
	cur, _ := r.stores[0].Secret(r.tenant, r.secret.ID)
	if _, v, err := r.svcs[len(r.svcs)-1].Refresh(context.Background(), cur); err != nil || !v.Equal([]byte(rpAccess(2))) {
		t.Errorf("the next refresh, with the stored refresh token: %v (the new token: %v)", err, v.Equal([]byte(rpAccess(2))))
	}
}

// (a) In one process: eight callers refreshing one expiring token make one
// token request to a provider that rotates refresh tokens, whether they
// share an oauth.Service (its single flight) or each has its own on one
// vault.Store (the store's in-process lock).
func TestRefreshOnceInProcess(t *testing.T) {
	for _, c := range []struct {
		name     string
		services int
	}{{"one service", 1}, {"eight services one store", 8}} {
		t.Run(c.name, func(t *testing.T) {
			prov := newRotatingProvider(t, 50*time.Millisecond)
			var clock atomic.Pointer[time.Time]
			store := openClockedStore(t, &clock)
			r := newReplicas(t, prov, []*vault.Store{store}, c.services, &clock)
			errs, vals, secs := r.refreshAll(8)
			r.checkOnce(t, errs, vals, secs)
		})
	}
}

// A caller that saw an older version of a token renewed meanwhile, whose
// lifetime is shorter than its window (so it needs a refresh again
// already), gets it without another token request.
func TestRefreshNewerVersionNotRefreshedAgain(t *testing.T) {
	prov := newRotatingProvider(t, 0)
	var clock atomic.Pointer[time.Time]
	store := openClockedStore(t, &clock)
	r := newReplicas(t, prov, []*vault.Store{store}, 2, &clock)
	// Renewed elsewhere to a 3 s token: within ShortRefreshWindow at once.
	now := r.now()
	exp := now.Add(3 * time.Second)
	renewed, err := store.RotateSecret(r.tenant, r.secret.ID, vault.RotateInput{Value: "at-elsewhere-12345", ExpiresAt: &exp})
	if err != nil {
		t.Fatal(err)
	}
	if !NeedsRefresh(renewed, now) {
		t.Fatal("a 3 s token does not need a refresh")
	}
	got, v, err := r.svcs[1].Refresh(context.Background(), r.secret) // the version before
	if err != nil || got.Version != renewed.Version || !v.Equal([]byte("at-elsewhere-12345")) {
		t.Errorf("caller with the older version: %v, version %d (want %d, the renewed token)", err, got.Version, renewed.Version)
	}
	if n := prov.refreshes.Load(); n != 0 {
		t.Errorf("%d token requests (want 0)", n)
	}
	// A caller that had the renewed version already refreshes it.
	if _, v, err := r.svcs[1].Refresh(context.Background(), renewed); err != nil || !v.Equal([]byte(rpAccess(1))) {
		t.Errorf("caller with the renewed version: %v", err)
	}
	if n := prov.refreshes.Load(); n != 1 {
		t.Errorf("%d token requests (want 1)", n)
	}
}

// postgresDSN is the DSN of the test PostgreSQL with application_name set
// to app, or skips the test naming how to run it.
func postgresDSN(t *testing.T, app string) string {
	t.Helper()
	dsn := os.Getenv("EGRESSD_TEST_POSTGRES")
	if dsn == "" {
		t.Skip("no PostgreSQL: set EGRESSD_TEST_POSTGRES to a DSN, e.g. (as root, Debian's postgresql installed) " +
			`pg_virtualenv -t -o fsync=off sh -c 'EGRESSD_TEST_POSTGRES="host=$PGHOST port=$PGPORT user=$PGUSER password=$PGPASSWORD dbname=$PGDATABASE" go test ./oauth/ ./vault/pgstore/', or run .ci/run`)
	}
	if strings.Contains(dsn, "://") {
		sep := "?"
		if strings.Contains(dsn, "?") {
			sep = "&"
		}
		return dsn + sep + "application_name=" + app
	}
	return dsn + " application_name=" + app
}

// pgReplicas opens n vault Stores on one fresh pgstore schema, as n
// replicas would (one master key, a journal each); the schema is dropped
// at the test's end. Replica i's sessions are named app-i.
func pgReplicas(t *testing.T, n int, app string, clock *atomic.Pointer[time.Time]) []*vault.Store {
	t.Helper()
	dsn := postgresDSN(t, app)
	schema := pgtest.FreshSchema(t, dsn, "egressd_oauth_")
	key := vault.NewMasterKey()
	dir := t.TempDir()
	var stores []*vault.Store
	for i := range n {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		be, err := pgstore.Open(ctx, postgresDSN(t, fmt.Sprintf("%s-%d", app, i)), pgstore.Options{Schema: schema, MaxConns: 4})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		s, err := vault.Open(vault.Config{Backend: be, JournalPath: filepath.Join(dir, fmt.Sprintf("journal-%d", i)), MasterKey: key, NoSync: true,
			Now: testClock(clock)})
		if err != nil {
			be.Close()
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		stores = append(stores, s)
	}
	return stores
}

// (b) Eight replicas (eight vault Stores on one PostgreSQL schema, each
// with its own oauth.Service and caches) refresh one expiring token at
// once: one token request reaches the provider, all eight get the new
// access token, and the store holds the rotated refresh token.
func TestRefreshOnceAcrossReplicasPostgres(t *testing.T) {
	var clock atomic.Pointer[time.Time]
	stores := pgReplicas(t, 8, "egressd-oauth-b", &clock)
	prov := newRotatingProvider(t, 100*time.Millisecond)
	r := newReplicas(t, prov, stores, 8, &clock)
	// Each replica's caller, and a second caller on each (its single
	// flight), at once.
	errs, vals, secs := r.refreshAll(16)
	r.checkOnce(t, errs, vals, secs)
}

// (c) A replica that took the refresh lock and then lost it (its lock
// connection terminated, as when it dies or loses its database) before
// its token request: the lock is released, another replica waiting for it
// proceeds and refreshes once, and the first one does not call the
// provider with the refresh token it read.
func TestRefreshLockHolderDiesPostgres(t *testing.T) {
	var clock atomic.Pointer[time.Time]
	stores := pgReplicas(t, 2, "egressd-oauth-c", &clock)
	prov := newRotatingProvider(t, 0)
	r := newReplicas(t, prov, stores, 2, &clock)
	a, b := r.svcs[0], r.svcs[1]
	inLock := make(chan struct{})
	lost := make(chan error, 1)
	a.beforeTokenRequest = func(lctx context.Context) {
		close(inLock)
		select { // frozen until its lock is gone
		case <-lctx.Done():
			lost <- context.Cause(lctx)
		case <-time.After(30 * time.Second):
			lost <- errors.New("the lock's context was not canceled within 30 s")
		}
	}
	aErr := make(chan error, 1)
	go func() {
		_, _, err := a.Refresh(context.Background(), r.secret)
		aErr <- err
	}()
	<-inLock
	bDone := make(chan struct{})
	var bVal vault.Value
	var bErr error
	go func() {
		defer close(bDone)
		_, bVal, bErr = b.Refresh(context.Background(), r.secret)
	}()
	// B waits for the lock in the server; A's lock session is killed.
	admin, err := pgx.Connect(context.Background(), postgresDSN(t, "egressd-oauth-c-admin"))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	var pid int32
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		var waiting int
		err := admin.QueryRow(context.Background(), `SELECT
			coalesce(max(l.pid) FILTER (WHERE l.granted AND a.application_name = 'egressd-oauth-c-0'), 0),
			count(*) FILTER (WHERE NOT l.granted AND a.application_name = 'egressd-oauth-c-1')
			FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
			WHERE l.locktype = 'advisory' AND l.objsubid = 1`).Scan(&pid, &waiting)
		if err != nil {
			t.Fatal(err)
		}
		if pid != 0 && waiting == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 10 s: replica A's lock session %d, replica B's waits %d", pid, waiting)
		}
	}
	var ok bool
	if err := admin.QueryRow(context.Background(), "SELECT pg_terminate_backend($1)", pid).Scan(&ok); err != nil || !ok {
		t.Fatalf("pg_terminate_backend: %v %v", ok, err)
	}
	<-bDone
	if bErr != nil || !bVal.Equal([]byte(rpAccess(1))) {
		t.Errorf("replica B after A's lock ended: %v (the refreshed token: %v)", bErr, bVal.Equal([]byte(rpAccess(1))))
	}
	if err := <-lost; !errors.Is(err, storage.ErrLockLost) {
		t.Errorf("replica A's lock context: %v (want ErrLockLost)", err)
	}
	if err := <-aErr; !errors.Is(err, ErrRefresh) || !strings.Contains(err.Error(), "lock was lost") {
		t.Errorf("replica A: %v (want ErrRefresh, the lock lost)", err)
	}
	if n, reused := prov.refreshes.Load(), prov.reused.Load(); n != 1 || reused != 0 {
		t.Errorf("%d token requests, %d with a refresh token used already (want 1, 0)", n, reused)
	}
	var rt vault.Value
	stores[1].Read(func(rd *vault.Reader) error {
		_, rt, _, err = rd.OpenValue(r.tenant, r.secret.ID)
		return err
	})
	if err != nil || !rt.Equal([]byte(rpRefresh(2))) {
		t.Errorf("the stored refresh token is not the rotated one (%v)", err)
	}
}

// openClockedStore opens a vault in a temporary file whose clock is clock,
// closed when t ends.
func openClockedStore(t *testing.T, clock *atomic.Pointer[time.Time]) *vault.Store {
	t.Helper()
	store, err := vault.Open(vault.Config{Path: filepath.Join(t.TempDir(), "v.db"), MasterKey: vault.NewMasterKey(), NoSync: true,
		Now: testClock(clock)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return store
}
