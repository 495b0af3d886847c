package golden

import (
	"context"
	"crypto/x509"
	"time"

	"github.com/egressd/egressd/proxy"
	"github.com/egressd/egressd/resolver"
	"github.com/egressd/egressd/vault"
)

// Target is where cases are replayed: LocalTarget (the proxy built
// in-process, for TestGolden) or *External (a running egressd, for
// "egressd replay").
type Target interface {
	// open prepares one case's run.
	open(c *Case) (session, error)
}

// session is one case's run on a Target: it stores the case's setup,
// names the proxy and the upstream, and fetches the audit event.
type session interface {
	createSandbox(in vault.SandboxInput) (id, token string, err error)
	upsertSecret(in vault.SecretInput) (id string, err error)
	rotateSecret(id, value string) error
	disableSecret(id string) error
	createBinding(in vault.BindingInput) error
	updateSettings(p vault.SettingsPatch) error
	// env lists the placeholders the sandbox holds now.
	env(sandboxID string) ([]resolver.EnvEntry, error)
	// ensurePlaceholder issues a placeholder for a name that does not
	// resolve for the sandbox (disabled, unknown).
	ensurePlaceholder(sandboxID, name, prefix string) (string, error)
	// proxyAddr is the proxy's host:port.
	proxyAddr() string
	// roots trust egressd's CA and the upstream's.
	roots() *x509.CertPool
	upstream() *Upstream
	// event returns the final audit event of the request the sandbox (""
	// if none) just sent, nil if none came; none says the case expects
	// none, so a short wait will do.
	event(sandboxID string, none bool) (*proxy.Event, error)
	close()
}

// Skip is the error of a case a Target cannot run, with the reason.
type Skip struct{ Reason string }

func (s *Skip) Error() string { return "skipped: " + s.Reason }

// LocalTarget runs each case on a fresh in-process proxy (StartLocal)
// whose data lives in Dir.
type LocalTarget struct{ Dir string }

func (t LocalTarget) open(*Case) (session, error) {
	l, err := StartLocal(t.Dir)
	if err != nil {
		return nil, err
	}
	return localSession{l}, nil
}

type localSession struct{ l *Local }

func (s localSession) createSandbox(in vault.SandboxInput) (string, string, error) {
	sbx, token, err := s.l.Store.CreateSandbox(s.l.TenantID, in)
	return sbx.ID, token, err
}

func (s localSession) upsertSecret(in vault.SecretInput) (string, error) {
	res, err := s.l.Store.UpsertSecret(s.l.TenantID, in)
	return res.Secret.ID, err
}

func (s localSession) rotateSecret(id, value string) error {
	_, err := s.l.Store.RotateSecret(s.l.TenantID, id, vault.RotateInput{Value: value})
	return err
}

func (s localSession) disableSecret(id string) error {
	_, err := s.l.Store.SetDisabled(s.l.TenantID, id, true)
	return err
}

func (s localSession) createBinding(in vault.BindingInput) error {
	_, err := s.l.Store.CreateBinding(s.l.TenantID, in)
	return err
}

func (s localSession) updateSettings(p vault.SettingsPatch) error {
	_, err := s.l.Store.UpdateSettings(s.l.TenantID, p)
	return err
}

func (s localSession) env(id string) ([]resolver.EnvEntry, error) {
	return s.l.Resolver.Env(context.Background(), s.l.TenantID, id)
}

func (s localSession) ensurePlaceholder(id, name, prefix string) (string, error) {
	out, err := s.l.Store.EnsurePlaceholders(s.l.TenantID, id, map[string]string{name: prefix})
	return out[name], err
}

func (s localSession) proxyAddr() string { return s.l.Addr }

func (s localSession) roots() *x509.CertPool {
	roots := x509.NewCertPool()
	roots.AddCert(s.l.CA.Certificate())
	roots.AddCert(s.l.Up.CA.Certificate())
	return roots
}

func (s localSession) upstream() *Upstream { return s.l.Up }

func (s localSession) event(_ string, none bool) (*proxy.Event, error) {
	wait := 2 * time.Second
	if none {
		wait = 200 * time.Millisecond
	}
	select {
	case ev := <-s.l.Events:
		return ev, nil
	case <-time.After(wait):
		return nil, nil
	}
}

func (s localSession) close() { s.l.Close() }
