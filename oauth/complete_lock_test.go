package oauth

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/egressd/egressd/vault"
)

// Regression: connecting an account again while a refresh of its secret
// is under way stored the connect's tokens, and then the refresh stored
// the tokens of the grant they replace over them (for another account of
// the user's, the old one's). Complete waits for the refresh lock, so the
// connect's tokens are the last stored.
func TestCompleteWaitsForRefresh(t *testing.T) {
	prov := newRotatingProvider(t, 0)
	var clock atomic.Pointer[time.Time]
	store := openClockedStore(t, &clock)
	r := newReplicas(t, prov, []*vault.Store{store}, 1, &clock)
	svc := r.svcs[0]
	ctx := context.Background()
	again, err := svc.Start(ctx, vault.Actor{Kind: vault.ActorOperator, ID: "t"}, r.tenant, StartInput{Provider: "rot", ExternalUserID: "u1"})
	if err != nil {
		t.Fatal(err)
	}

	// A refresh holds the lock, stopped before its token request.
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	svc.beforeTokenRequest = func(context.Context) {
		once.Do(func() { close(entered) })
		<-release
	}
	refreshed := make(chan error, 1)
	go func() {
		_, _, err := svc.Refresh(ctx, r.secret)
		refreshed <- err
	}()
	<-entered
	// The connect again, meanwhile. Without the lock it completes at once
	// (and the refresh, let go then, stores over it); with it, it waits
	// for the refresh, which is let go after a while.
	completed := make(chan error, 1)
	go func() {
		_, err := svc.Complete(ctx, By{TenantID: r.tenant, ExternalUserID: "u1"}, "code-again", again.State, nil)
		completed <- err
	}()
	var completeErr error
	select {
	case completeErr = <-completed:
		t.Error("the connect completed while a refresh of its secret held the refresh lock")
		close(release)
	case <-time.After(300 * time.Millisecond):
		close(release)
		completeErr = <-completed
	}
	if err := <-refreshed; err != nil {
		t.Fatalf("refresh: %v", err)
	}
	if completeErr != nil {
		t.Fatalf("complete: %v", completeErr)
	}
	var value vault.Value
	var version int
	if err := store.Read(func(rd *vault.Reader) error {
		var err error
		value, _, version, err = rd.OpenValue(r.tenant, r.secret.ID)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if version != r.secret.Version+2 || !value.Equal([]byte(rpAccess(0))) {
		t.Fatalf("stored: version %d (want %d), the connect's access token: %v (want true: the connect's tokens are the last stored)", version, r.secret.Version+2, value.Equal([]byte(rpAccess(0))))
	}
}
