package vault

import (
	"sync"
	"testing"
)

// recorder is an OnChange listener that notes each call and runs a probe
// inside it, so a test can check what the listener saw.
type recorder struct {
	mu    sync.Mutex
	calls []string
	probe func(tenantID string)
}

func (r *recorder) fn(tenantID string) {
	r.mu.Lock()
	r.calls = append(r.calls, tenantID)
	probe := r.probe
	r.mu.Unlock()
	if probe != nil {
		probe(tenantID)
	}
}

func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.calls
	r.calls, r.probe = nil, nil
	return c
}

// Every write calls the listeners with its tenant once it has committed and
// before the method returns: a listener that reads sees the write.
func TestOnChange(t *testing.T) {
	s := openTest(t)
	rec, second := &recorder{}, &recorder{}
	s.OnChange(rec.fn)
	s.OnChange(second.fn)

	tn := mustTenant(t, s, "acme")
	other := mustTenant(t, s, "other")
	rec.take()
	second.take()
	sbx, _ := mustSandbox(t, s, tn.ID, SandboxInput{})
	sec := mustUpsert(t, s, tn.ID, SecretInput{Name: "k", Value: "v1", Scope: ScopeTenant, AllowedHosts: []string{"api.example.com"}}).Secret
	rec.take()
	second.take()

	// expect runs write, and checks that the listener was called exactly
	// once with tenantID and that, inside the call, check already held.
	expect := func(name, tenantID string, check func() bool, write func() error) {
		t.Helper()
		sawWrite := false
		rec.mu.Lock()
		rec.probe = func(string) { sawWrite = check() }
		rec.mu.Unlock()
		if err := write(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		calls := rec.take()
		if len(calls) != 1 || calls[0] != tenantID {
			t.Errorf("%s: listener calls %v, want [%s]", name, calls, tenantID)
		} else if !sawWrite {
			t.Errorf("%s: the listener ran before the write was visible", name)
		}
		if c := second.take(); len(c) != 1 {
			t.Errorf("%s: second listener calls %v", name, c)
		}
	}
	always := func() bool { return true }
	version := func(v int) func() bool {
		return func() bool {
			_, _, ver, err := openValue(s, tn.ID, sec.ID)
			return err == nil && ver == v
		}
	}
	var bindingID string
	expect("UpsertSecret", tn.ID, version(2), func() error {
		_, err := s.UpsertSecret(tn.ID, SecretInput{Name: "k", Value: "v2", Scope: ScopeTenant, AllowedHosts: []string{"api.example.com"}})
		return err
	})
	expect("RotateSecret", tn.ID, version(3), func() error {
		_, err := s.RotateSecret(tn.ID, sec.ID, RotateInput{Value: "v3"})
		return err
	})
	expect("SetDisabled", tn.ID, func() bool { got, _ := s.Secret(tn.ID, sec.ID); return got.Disabled }, func() error {
		_, err := s.SetDisabled(tn.ID, sec.ID, true)
		return err
	})
	expect("CreateBinding", tn.ID, func() bool { bs, _ := s.ListBindings(tn.ID, BindingFilter{}); return len(bs) == 1 }, func() error {
		b, err := s.CreateBinding(tn.ID, BindingInput{SecretID: sec.ID, ResourceID: sbx.ID})
		bindingID = b.ID
		return err
	})
	expect("DeleteBinding", tn.ID, func() bool { bs, _ := s.ListBindings(tn.ID, BindingFilter{}); return len(bs) == 0 }, func() error {
		return s.DeleteBinding(tn.ID, bindingID)
	})
	expect("EnsurePlaceholders", tn.ID, func() bool {
		var n int
		s.Read(func(r *Reader) error { n = len(r.Placeholders(sbx.ID)); return nil })
		return n == 1
	}, func() error {
		_, err := s.EnsurePlaceholders(tn.ID, sbx.ID, map[string]string{"k": ""})
		return err
	})
	off := false
	expect("UpdateSettings", tn.ID, func() bool { got, _ := s.Tenant(tn.ID); return !got.Settings.AllowEndUserCredentials }, func() error {
		_, err := s.UpdateSettings(tn.ID, SettingsPatch{AllowEndUserCredentials: &off})
		return err
	})
	var token string
	expect("CreateAPIKey", tn.ID, func() bool { _, err := s.Authenticate(token); return token == "" || err == nil }, func() error {
		var err error
		token, _, err = s.CreateAPIKey(tn.ID, KeyAdmin, "", 0)
		return err
	})
	var sbx2 Sandbox
	expect("CreateSandbox", other.ID, always, func() error {
		var err error
		sbx2, _, err = s.CreateSandbox(other.ID, SandboxInput{})
		return err
	})
	expect("DeleteSandbox", other.ID, func() bool { _, err := s.Sandbox(other.ID, sbx2.ID); return err != nil }, func() error {
		return s.DeleteSandbox(other.ID, sbx2.ID)
	})
	expect("DeleteSecret", tn.ID, func() bool { _, err := s.Secret(tn.ID, sec.ID); return err != nil }, func() error {
		return s.DeleteSecret(tn.ID, sec.ID)
	})
	// A new tenant's id is known only once it is created.
	created, _, err := s.CreateTenant("third")
	if err != nil {
		t.Fatal(err)
	}
	if c := rec.take(); len(c) != 1 || c[0] != created.ID {
		t.Errorf("CreateTenant: listener calls %v, want [%s]", c, created.ID)
	}
	second.take()

	// Reads, and writes that changed nothing, call nobody.
	s.EnsurePlaceholders(tn.ID, sbx.ID, map[string]string{"k": ""})
	s.ListSecrets(tn.ID, SecretFilter{})
	s.EnsureTenant("acme")
	s.UpsertSecret(tn.ID, SecretInput{Name: "bad name", Value: "v", Scope: ScopeTenant, AllowedHosts: []string{"api.example.com"}})
	s.DeleteSecret(tn.ID, "sec_nope")
	if c := rec.take(); len(c) != 0 {
		t.Errorf("calls without a write: %v", c)
	}
}
