package main

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"time"

	"github.com/egressd/egressd/audit"
	"github.com/egressd/egressd/internal/datadir"
	"github.com/egressd/egressd/vault"
)

// sizeConfig is what -size and the -size-* flags set.
type sizeConfig struct {
	Dir       string // the data dir to fill; must not hold a vault
	Tenants   int
	Sandboxes int // over all tenants
	Secrets   int // over all tenants
	AuditRows int // over all tenants
	Egressd   string
	Keep      bool
	// Calls is how many times each API call is timed (p50, p99).
	Calls int
}

// defaultSize is issue 15's "one node at size".
var defaultSize = sizeConfig{Tenants: 1000, Sandboxes: 10_000, Secrets: 100_000, AuditRows: 1_000_000, Calls: 200}

// The first tenant is a large one (what the dashboard's lists are timed
// on); the others share the rest evenly.
const (
	bigSandboxShare = 0.10
	bigSecretShare  = 0.20
	bigAuditShare   = 0.50
)

// Secrets of a tenant: names come from a pool of namePool, so a sandbox's
// walk finds each name at several levels (shadowing, as in real use). The
// first tenantScoped secrets are tenant-wide (KEY_00 …); the rest go in
// turn to a workspace, an external user and an external workspace, namePool
// names per owner. Every sandbox also gets one binding (BOUND_KEY).
const (
	namePool     = 20
	tenantScoped = namePool / 2
	auditSpan    = 30 * 24 * time.Hour // audit rows are spread over the last 30 days
	auditBatch   = 1000                // rows a AppendAudit call
)

func (c *sizeConfig) check() error {
	switch {
	case c.Tenants < 1 || c.Tenants > 1_000_000:
		return fmt.Errorf("-size-tenants %d: want 1 to 1000000", c.Tenants)
	case c.Sandboxes < c.Tenants || c.Sandboxes > 10_000_000:
		return fmt.Errorf("-size-sandboxes %d: want one a tenant at least, at most 10000000", c.Sandboxes)
	case c.Secrets < c.Tenants*tenantScoped || c.Secrets > 100_000_000:
		return fmt.Errorf("-size-secrets %d: want %d a tenant at least, at most 100000000", c.Secrets, tenantScoped)
	case c.AuditRows < 0 || c.AuditRows > 100_000_000:
		return fmt.Errorf("-size-audit %d: want 0 to 100000000", c.AuditRows)
	case c.Calls < 1 || c.Calls > 100_000:
		return fmt.Errorf("%d calls: want 1 to 100000", c.Calls)
	}
	return nil
}

// genTenant is one generated tenant: what the measurements use.
type genTenant struct {
	ID        string
	Sandboxes []string
	Secrets   []genSecret
	Rows      int // audit rows
	// Owners is how many owners each end-user scope has: sandbox j has
	// workspace w(j mod Owners), and so on.
	Owners int
}

type genSecret struct{ ID, Name string }

// generated is the data set and what making it took.
type generated struct {
	Tenants []genTenant
	// Keys are admin API keys of the first two tenants (the large one and
	// a typical one); nothing prints them.
	Keys []string
	// Stage durations, in order.
	Stages []stage
	// DBBytesBeforeAudit is the vault file's size before the audit rows
	// were added; DBBytes after (the server not started yet).
	DBBytesBeforeAudit, DBBytes int64
}

type stage struct {
	Name string
	Took time.Duration
	N    int
}

// split shares total among n: the first gets share of it (n > 1), the
// others the rest evenly, the remainder to the first of them; every one at
// least floor.
func split(total, n int, share float64, floor int) []int {
	out := make([]int, n)
	if n == 1 {
		out[0] = total
		return out
	}
	first := max(floor, int(math.Round(float64(total)*share)))
	first = min(first, total-floor*(n-1))
	rest := total - first
	out[0] = first
	for i := 1; i < n; i++ {
		out[i] = rest / (n - 1)
		if i-1 < rest%(n-1) {
			out[i]++
		}
	}
	return out
}

// generate fills cfg.Dir, a data dir as egressd init leaves it (master
// key, CA, node id, vault), through the vault's own API: tenants,
// sandboxes, secrets, bindings, then the audit rows in batches. The vault
// is opened without fsync while it is filled (one transaction a record:
// there is no bulk write), and closed before it returns. progress gets a
// line a stage.
func generate(cfg sizeConfig, progress io.Writer) (*generated, error) {
	dir := datadir.Dir(cfg.Dir)
	if had, err := dir.HasVault(); err != nil || had {
		return nil, errors.Join(err, fmt.Errorf("%s holds a vault already: give a new directory", dir.DB()))
	}
	ks := keySource(cfg.Dir)
	o, err := datadir.Open(dir, ks)
	if err != nil {
		return nil, err
	}
	if err := o.Store.Close(); err != nil {
		return nil, err
	}
	key, err := vault.LoadMasterKeyFile(ks.File)
	if err != nil {
		return nil, err
	}
	node, err := dir.NodeID()
	if err != nil {
		return nil, err
	}
	st, err := vault.Open(vault.Config{Path: dir.DB(), MasterKey: key, NodeID: node, NoSync: true})
	if err != nil {
		return nil, err
	}
	defer st.Close()
	g := &generated{}
	timed := func(name string, n int, fn func() error) error {
		t0 := time.Now()
		if err := fn(); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		s := stage{Name: name, Took: time.Since(t0), N: n}
		g.Stages = append(g.Stages, s)
		fmt.Fprintf(progress, "egress-bench: size: %d %s in %.1fs (%.0f/s)\n", n, name, s.Took.Seconds(), float64(n)/max(s.Took.Seconds(), 1e-9))
		return nil
	}
	sbxN := split(cfg.Sandboxes, cfg.Tenants, bigSandboxShare, 1)
	secN := split(cfg.Secrets, cfg.Tenants, bigSecretShare, tenantScoped)
	rowN := split(cfg.AuditRows, cfg.Tenants, bigAuditShare, 0)
	g.Tenants = make([]genTenant, cfg.Tenants)
	if err := timed("tenants", cfg.Tenants, func() error {
		for i := range g.Tenants {
			t, _, err := st.EnsureTenant(fmt.Sprintf("size-%04d", i))
			if err != nil {
				return err
			}
			g.Tenants[i].ID = t.ID
			if i < 2 {
				tok, _, err := st.CreateAPIKey(t.ID, vault.KeyAdmin, "", 0)
				if err != nil {
					return err
				}
				g.Keys = append(g.Keys, tok)
			}
		}
		return nil
	}); err != nil {
		return nil, err
	}
	if err := timed("sandboxes", cfg.Sandboxes, func() error {
		for i := range g.Tenants {
			t := &g.Tenants[i]
			perScope := (secN[i] - tenantScoped + 2) / 3
			t.Owners = max(1, (perScope+namePool-1)/namePool)
			for j := range sbxN[i] {
				o := j % t.Owners
				sbx, _, err := st.CreateSandbox(t.ID, vault.SandboxInput{
					Name: fmt.Sprintf("sbx-%d", j), OwnerUserID: fmt.Sprintf("u%d", j), WorkspaceID: fmt.Sprintf("w%d", o),
					ExternalUserID: fmt.Sprintf("eu%d", o), ExternalWorkspaceID: fmt.Sprintf("ew%d", o),
				})
				if err != nil {
					return err
				}
				t.Sandboxes = append(t.Sandboxes, sbx.ID)
			}
		}
		return nil
	}); err != nil {
		return nil, err
	}
	if err := timed("secrets", cfg.Secrets, func() error {
		for i := range g.Tenants {
			t := &g.Tenants[i]
			for k := range secN[i] {
				in := secretAt(k)
				res, err := st.UpsertSecret(t.ID, in)
				if err != nil {
					return fmt.Errorf("tenant %d secret %d: %w", i, k, err)
				}
				t.Secrets = append(t.Secrets, genSecret{ID: res.Secret.ID, Name: in.Name})
			}
		}
		return nil
	}); err != nil {
		return nil, err
	}
	if err := timed("bindings", cfg.Sandboxes, func() error {
		for i := range g.Tenants {
			t := &g.Tenants[i]
			for j, sbx := range t.Sandboxes {
				if _, err := st.CreateBinding(t.ID, vault.BindingInput{SecretID: t.Secrets[j%tenantScoped].ID, ResourceID: sbx,
					ResourceType: vault.ResourceSandbox, ExposeAsEnv: "BOUND_KEY"}); err != nil {
					return err
				}
			}
		}
		return nil
	}); err != nil {
		return nil, err
	}
	if g.DBBytesBeforeAudit, err = fileSize(dir.DB()); err != nil {
		return nil, err
	}
	end := time.Now().Add(-time.Minute)
	if err := timed("audit rows", cfg.AuditRows, func() error {
		batch := make([]audit.Row, 0, auditBatch)
		for i := range g.Tenants {
			t := &g.Tenants[i]
			t.Rows = rowN[i]
			for k := range rowN[i] {
				at := end.Add(-auditSpan + time.Duration(int64(auditSpan)/int64(rowN[i])*int64(k)))
				batch = append(batch, auditRowAt(t, k, at))
				if len(batch) == cap(batch) || k == rowN[i]-1 {
					if err := st.AppendAudit(batch...); err != nil {
						return err
					}
					batch = batch[:0]
				}
			}
		}
		return nil
	}); err != nil {
		return nil, err
	}
	if err := timed("closing (audit rows indexed)", 0, st.Close); err != nil {
		return nil, err
	}
	if g.DBBytes, err = fileSize(dir.DB()); err != nil {
		return nil, err
	}
	return g, nil
}

// secretAt is the k-th secret of a tenant (see namePool).
func secretAt(k int) vault.SecretInput {
	in := vault.SecretInput{Value: "size-" + randomAlnum(32), Type: "api_key",
		AllowedHosts: []string{fmt.Sprintf("api%d.size.test", k%namePool)}}
	if k < tenantScoped {
		in.Name, in.Scope = fmt.Sprintf("KEY_%02d", k), vault.ScopeTenant
		return in
	}
	k -= tenantScoped
	n := k / 3
	in.Name = fmt.Sprintf("KEY_%02d", n%namePool)
	owner := n / namePool
	switch k % 3 {
	case 0:
		in.Scope, in.WorkspaceID = vault.ScopeWorkspace, fmt.Sprintf("w%d", owner)
	case 1:
		in.Scope, in.ExternalUserID = vault.ScopeExternalUser, fmt.Sprintf("eu%d", owner)
	default:
		in.Scope, in.ExternalWorkspaceID = vault.ScopeExternalWorkspace, fmt.Sprintf("ew%d", owner)
	}
	return in
}

// auditRowAt is the k-th audit row of t: a request of one of its
// sandboxes that used one of its secrets, as the proxy records it.
func auditRowAt(t *genTenant, k int, at time.Time) audit.Row {
	sbx := t.Sandboxes[k%len(t.Sandboxes)]
	sec := t.Secrets[k%len(t.Secrets)]
	o := (k % len(t.Sandboxes)) % t.Owners
	r := audit.Row{
		Time: at, Kind: audit.KindRequest, TenantID: t.ID, SandboxID: sbx,
		WorkspaceID: fmt.Sprintf("w%d", o), OwnerUserID: fmt.Sprintf("u%d", k%len(t.Sandboxes)),
		ExternalUserID: fmt.Sprintf("eu%d", o), ExternalWorkspaceID: fmt.Sprintf("ew%d", o),
		SecretID: sec.ID, SecretName: sec.Name, SecretVersion: 1, Level: "tenant",
		Host: fmt.Sprintf("api%d.size.test", k%namePool), Method: "POST", Path: "/v1/chat/completions",
		Status: 200, Outcome: "substituted", DurationMS: float64(100+k%900) / 10,
		Uses: []audit.Use{{Name: sec.Name, SecretID: sec.ID, Version: 1, Level: "tenant", Location: "header", Action: "substituted"}},
	}
	if k%20 == 0 {
		r.Status, r.Outcome, r.Reason = 403, "denied", "host_not_allowed"
		r.Uses[0].Action, r.Uses[0].Reason = "denied", "host_not_allowed"
	}
	return r
}

func fileSize(path string) (int64, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// sizeDirFiles is the total size of the regular files in dir (the vault,
// its audit journal, the keys).
func sizeDirFiles(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}
