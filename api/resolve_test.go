package api_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/egressd/egressd/client"
	"github.com/egressd/egressd/resolver"
	"github.com/egressd/egressd/vault"
)

// TestWritesReachTheNextResolve checks that once the API has answered a
// rotate, disable, enable, delete, unbind or settings change, the very next
// Resolve sees it, even with a warm cache and readers racing the writes.
func TestWritesReachTheNextResolve(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	c := h.admin
	sbx := must[client.SandboxCreated](t)(c.CreateSandbox(ctx, client.SandboxInput{ExternalUserID: "eu1"}))
	tenantSec := must[client.UpsertResult](t)(c.UpsertSecret(ctx, client.SecretInput{Name: "key", Value: "tenant-v1", Scope: vault.ScopeTenant, AllowedHosts: []string{"api.example.com"}})).Secret
	userSec := must[client.UpsertResult](t)(c.UpsertSecret(ctx, client.SecretInput{Name: "key", Value: "user-v1", Scope: vault.ScopeExternalUser, ExternalUserID: "eu1", AllowedHosts: []string{"api.example.com"}})).Secret
	bound := must[client.UpsertResult](t)(c.UpsertSecret(ctx, client.SecretInput{Name: "key", Value: "bound-v1", Scope: vault.ScopeResource, ResourceID: sbx.ID, AllowedHosts: []string{"api.example.com"}}))

	resolve := func() (string, resolver.Level, int) {
		t.Helper()
		res, err := h.resolver.Resolve(ctx, sbx.ID, "key")
		if errors.Is(err, resolver.ErrNoSecret) {
			return "", resolver.LevelNone, 0
		}
		if err != nil {
			t.Fatal(err)
		}
		return string(res.Value.Reveal()), res.Level, res.Secret.Version
	}
	expect := func(step, value string, level resolver.Level) {
		t.Helper()
		// Twice: the first may fill the cache, the second must hit it.
		for range 2 {
			if v, l, _ := resolve(); v != value || l != level {
				t.Fatalf("after %s: %q at %s, want %q at %s", step, v, l, value, level)
			}
		}
	}
	expect("setup", "bound-v1", resolver.LevelBinding)

	must[vault.Secret](t)(c.RotateSecret(ctx, bound.Secret.ID, client.RotateInput{Value: "bound-v2"}))
	expect("rotate", "bound-v2", resolver.LevelBinding)
	must[vault.Secret](t)(c.DisableSecret(ctx, bound.Secret.ID))
	expect("disable bound", "user-v1", resolver.LevelExternalUser)
	off := false
	must[vault.Settings](t)(c.UpdateSettings(ctx, vault.SettingsPatch{AllowEndUserCredentials: &off}))
	expect("end-user credentials off", "tenant-v1", resolver.LevelTenant)
	on := true
	must[vault.Settings](t)(c.UpdateSettings(ctx, vault.SettingsPatch{AllowEndUserCredentials: &on}))
	expect("end-user credentials on", "user-v1", resolver.LevelExternalUser)
	must[vault.Secret](t)(c.EnableSecret(ctx, bound.Secret.ID))
	expect("enable bound", "bound-v2", resolver.LevelBinding)
	if err := c.DeleteBinding(ctx, bound.Binding.ID); err != nil {
		t.Fatal(err)
	}
	expect("unbind", "user-v1", resolver.LevelExternalUser)
	if err := c.DeleteSecret(ctx, userSec.ID); err != nil {
		t.Fatal(err)
	}
	expect("delete user secret", "tenant-v1", resolver.LevelTenant)
	must[vault.Secret](t)(c.DisableSecret(ctx, tenantSec.ID))
	expect("disable the last", "", resolver.LevelNone)
	must[vault.Secret](t)(c.EnableSecret(ctx, tenantSec.ID))

	// Readers race the writes; each answered rotation is what the next
	// Resolve on this goroutine sees.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
					h.resolver.Resolve(ctx, sbx.ID, "key")
				}
			}
		}()
	}
	for i := range 30 {
		want := fmt.Sprintf("tenant-r%d", i)
		sec := must[vault.Secret](t)(c.RotateSecret(ctx, tenantSec.ID, client.RotateInput{Value: want}))
		if v, _, version := resolve(); v != want || version != sec.Version {
			close(stop)
			t.Fatalf("rotation %d: resolved %q version %d, want %q version %d", i, v, version, want, sec.Version)
		}
		if i%5 == 0 {
			must[vault.Secret](t)(c.DisableSecret(ctx, tenantSec.ID))
			if v, _, _ := resolve(); v != "" {
				close(stop)
				t.Fatalf("disabled secret resolved to %q", v)
			}
			must[vault.Secret](t)(c.EnableSecret(ctx, tenantSec.ID))
		}
	}
	close(stop)
	wg.Wait()
}
