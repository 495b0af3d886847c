package api_test

import (
	"context"
	"io"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/egressd/egressd/client"
	"github.com/egressd/egressd/vault"
)

// Review regression: one state, many concurrent callbacks: exactly one
// completes, one code exchange, one secret version; the others are refused.
func TestReviewOAuthConcurrentCallbacksSingleUse(t *testing.T) {
	e := newOAuthEnv(t)
	ctx := context.Background()
	conn, err := e.admin.Connect(ctx, client.ConnectInput{Provider: "fake", ExternalUserID: "eu1"})
	if err != nil {
		t.Fatal(err)
	}
	code, state, redirect := e.authorizeWithoutCallback(conn.AuthorizeURL)
	cb := redirect + "?" + url.Values{"code": {code}, "state": {state}}.Encode()
	var wg sync.WaitGroup
	var mu sync.Mutex
	statuses := map[int]int{}
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := e.web().c.Get(cb)
			if err != nil {
				t.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			mu.Lock()
			statuses[resp.StatusCode]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	if statuses[200] != 1 {
		t.Fatalf("statuses %v: want exactly one 200", statuses)
	}
	f, err := e.admin.Flow(ctx, conn.ID, 0)
	if err != nil || f.Status != vault.FlowCompleted {
		t.Fatalf("%+v %v", f, err)
	}
	sec, err := e.store.Secret(f.TenantID, f.SecretID)
	if err != nil || sec.Version != 1 {
		t.Fatalf("secret %+v %v: want version 1", sec, err)
	}
	// The callback's code and state appear in no log line.
	logs := e.logs.String()
	if strings.Contains(logs, code) || strings.Contains(logs, state) {
		t.Fatal("the callback's code or state was logged")
	}
}

// Review regression: another tenant cannot see or wait on a flow, and a
// browser token cannot use the OAuth admin endpoints.
func TestReviewOAuthFlowTenantIsolation(t *testing.T) {
	e := newOAuthEnv(t)
	ctx := context.Background()
	conn, err := e.admin.Connect(ctx, client.ConnectInput{Provider: "fake", ExternalUserID: "eu1"})
	if err != nil {
		t.Fatal(err)
	}
	oc, _ := client.New(e.apiURL, e.op)
	other, err := oc.CreateTenant(ctx, "other-review")
	if err != nil {
		t.Fatal(err)
	}
	oc2, _ := client.New(e.apiURL, other.APIKey)
	if _, err := oc2.Flow(ctx, conn.ID, time.Second); client.StatusOf(err) != 404 {
		t.Fatalf("other tenant's GET flow: %v", err)
	}
	bt, err := e.admin.CreateBrowserToken(ctx, "eu1", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	bc, _ := client.New(e.apiURL, bt.Token)
	if _, err := bc.Flow(ctx, conn.ID, 0); client.StatusOf(err) != 403 {
		t.Fatalf("browser token GET flow: %v", err)
	}
	if _, err := bc.Connect(ctx, client.ConnectInput{Provider: "fake", ExternalUserID: "eu1"}); client.StatusOf(err) != 403 {
		t.Fatalf("browser token connect: %v", err)
	}
	if _, err := bc.Complete(ctx, client.EndUser{ExternalUserID: "eu1"}, "c", conn.State); client.StatusOf(err) != 403 {
		t.Fatalf("browser token complete: %v", err)
	}
	// The flow is still pending and completable by its tenant.
	if f, _ := e.admin.Flow(ctx, conn.ID, 0); f.Status != vault.FlowPending {
		t.Fatalf("flow after refused attempts: %s", f.Status)
	}
}
