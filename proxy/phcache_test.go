package proxy

import (
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/egressd/egressd/vault"
	"github.com/egressd/egressd/vault/boltstore"
	"github.com/egressd/egressd/vault/storage"
)

// A placeholder cached while its sandbox lived, seen in another sandbox's
// traffic after that sandbox was deleted (here, or on another replica),
// is recorded as unknown, as by a proxy that never cached it, not as a
// leak of a sandbox that is gone.
func TestDeletedSandboxPlaceholderIsUnknown(t *testing.T) {
	e := newEnv(t, nil)
	a, tokenA := e.sandbox(vault.SandboxInput{})
	b, _ := e.sandbox(vault.SandboxInput{})
	e.secret(vault.SecretInput{Name: "openai", Value: "openai-real", Scope: vault.ScopeTenant})
	phB := e.placeholder(b, "openai")
	send := func() Use {
		t.Helper()
		resp, _ := do(t, e.client(a.ID, tokenA), "GET", e.url("https", "api.test", "/"), nil, map[string]string{"X-B": phB})
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		if got := e.up.last(t).Header.Get("X-B"); got != phB {
			t.Fatalf("upstream got X-B %q", got)
		}
		ev := e.event(t)
		if len(ev.Uses) != 1 {
			t.Fatalf("uses %+v", ev.Uses)
		}
		return ev.Uses[0]
	}
	if u := send(); !u.Leak || u.LeakSandboxID != b.ID {
		t.Fatalf("before the delete: %+v", u)
	}
	if _, ok := e.proxy.phs.Get(phB[len(phB)-vault.PlaceholderCoreLen:]); !ok {
		t.Fatal("the placeholder is not cached")
	}
	if err := e.store.DeleteSandbox(e.tenant, b.ID); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if u := send(); u.Leak || u.Reason != "unknown_placeholder" {
			t.Fatalf("after the delete (%d): %+v", i, u)
		}
	}
}

// flakyBackend fails every View while fail is set, as a shared store that
// cannot be reached does.
type flakyBackend struct {
	storage.Backend
	fail atomic.Bool
}

var errUnreachable = errors.New("store unreachable")

func (f *flakyBackend) View(fn func(storage.Tx) error) error {
	if f.fail.Load() {
		return errUnreachable
	}
	return f.Backend.View(fn)
}

// A lookup that the store failed is not remembered as a miss: the
// placeholder is found once the store answers again. A real miss is.
func TestPlaceholderLookupFailureNotRemembered(t *testing.T) {
	dir := t.TempDir()
	bs, err := boltstore.Open(filepath.Join(dir, "v.db"), boltstore.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	fb := &flakyBackend{Backend: bs}
	st, err := vault.Open(vault.Config{Backend: fb, JournalPath: filepath.Join(dir, "journal"), MasterKey: vault.NewMasterKey(), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	tn, _, err := st.EnsureTenant("acme")
	if err != nil {
		t.Fatal(err)
	}
	sbx, _, err := st.CreateSandbox(tn.ID, vault.SandboxInput{})
	if err != nil {
		t.Fatal(err)
	}
	phs, err := st.EnsurePlaceholders(tn.ID, sbx.ID, map[string]string{"k": ""})
	if err != nil {
		t.Fatal(err)
	}
	core := vault.PlaceholderCore(phs["k"])
	p := &Proxy{cfg: Config{Store: st}, log: slog.New(slog.DiscardHandler)}
	p.phs, _ = lru.New[string, vault.Placeholder](16)
	p.phMiss, _ = lru.New[string, struct{}](16)

	fb.fail.Store(true)
	if _, err := p.placeholder(core); !errors.Is(err, errUnreachable) {
		t.Fatalf("lookup while the store fails: %v", err)
	}
	fb.fail.Store(false)
	if ph, err := p.placeholder(core); err != nil || ph.SandboxID != sbx.ID {
		t.Fatalf("lookup once the store answers: %+v %v", ph, err)
	}
	unknown := vault.PlaceholderMarker + strings.Repeat("Q", vault.PlaceholderTailLen)
	if _, err := p.placeholder(unknown); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("unknown core: %v", err)
	}
	if !p.phMiss.Contains(unknown) {
		t.Fatal("a miss is not remembered")
	}
}
