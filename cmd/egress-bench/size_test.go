package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/egressd/egressd/audit"
	"github.com/egressd/egressd/internal/datadir"
	"github.com/egressd/egressd/vault"
)

// The size run at a small scale (the 1,000,000-row one takes minutes: run
// it by hand, docs/benchmarks.md): the generator makes exactly the data set
// asked for, in a data dir that egressd serve starts on, and every figure
// is there. 2,000 audit rows (about 420 B of file each) grow the file past
// the free pages it has before them, so the bytes a row are measured.
func TestSizeSmall(t *testing.T) {
	cfg := sizeConfig{Dir: filepath.Join(t.TempDir(), "data"), Tenants: 2, Sandboxes: 12, Secrets: 60, AuditRows: 2000, Calls: 3}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var progress bytes.Buffer
	rep, err := measureSize(ctx, cfg, &progress)
	if err != nil {
		t.Fatalf("%v\n%s", err, progress.String())
	}
	var out bytes.Buffer
	reportSize(&out, cfg, rep)
	t.Log("\n" + out.String())

	// What the vault holds, counted through its API.
	st := openSized(t, cfg.Dir)
	tenants, err := st.Tenants()
	if err != nil || len(tenants) != cfg.Tenants {
		t.Fatalf("%d tenants (%v), want %d", len(tenants), err, cfg.Tenants)
	}
	var sandboxes, secrets, bindings int
	for _, tn := range tenants {
		sb, err := st.ListSandboxes(tn.ID, vault.SandboxFilter{})
		if err != nil {
			t.Fatal(err)
		}
		sc, err := st.ListSecrets(tn.ID, vault.SecretFilter{})
		if err != nil {
			t.Fatal(err)
		}
		bd, err := st.ListBindings(tn.ID, vault.BindingFilter{})
		if err != nil {
			t.Fatal(err)
		}
		sandboxes, secrets, bindings = sandboxes+len(sb), secrets+len(sc), bindings+len(bd)
	}
	var rows int
	if err := st.ExportAudit("", time.Time{}, func(r audit.Row) error {
		if r.Kind == audit.KindRequest {
			rows++
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if sandboxes != cfg.Sandboxes || secrets != cfg.Secrets || bindings != cfg.Sandboxes || rows != cfg.AuditRows {
		t.Errorf("the vault holds %d sandboxes, %d secrets, %d bindings, %d request rows; want %d, %d, %d, %d",
			sandboxes, secrets, bindings, rows, cfg.Sandboxes, cfg.Secrets, cfg.Sandboxes, cfg.AuditRows)
	}

	rf := rep.Resolve
	if rf.Warm.N == 0 || rf.Cold.N == 0 || rf.Found == 0 || rf.CacheLen != rf.Pairs {
		t.Errorf("resolver figures: warm %d runs, cold %d, %d of %d pairs found, %d cached", rf.Warm.N, rf.Cold.N, rf.Found/2, rf.Pairs, rf.CacheLen)
	}
	if len(rep.Startup) != 2 || rep.Startup[0] <= 0 || rep.Mem.RSS <= 0 || rep.Gen.DBBytes <= rep.Gen.DBBytesBeforeAudit {
		t.Errorf("startup %v, memory %+v, file %d bytes (%d before the audit rows)", rep.Startup, rep.Mem, rep.Gen.DBBytes, rep.Gen.DBBytesBeforeAudit)
	}
	for _, c := range rep.Calls {
		// Every list names items; the summaries have none.
		if c.N == 0 || c.P50 <= 0 || (!strings.Contains(c.Name, "summary") && c.Items < 0) {
			t.Errorf("%s: %+v", c.Name, c)
		}
		if strings.Contains(c.Name, "…/env") && c.Items < 2 {
			t.Errorf("%s: %d env entries", c.Name, c.Items)
		}
	}
	for _, want := range []string{"warm Resolve", "cold Resolve", "serve start to /readyz 200", "audit list, since=24h", "target: ≤ 500 B"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the report lacks %q", want)
		}
	}
}

// A data dir that holds a vault is refused, and left as it was.
func TestSizeRefusesAVault(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	cfg := sizeConfig{Dir: dir, Tenants: 1, Sandboxes: 1, Secrets: tenantScoped, AuditRows: 1, Calls: 1}
	if _, err := generate(cfg, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(datadir.Dir(dir).DB())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := generate(cfg, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "holds a vault") {
		t.Fatalf("a second generate into %s: %v", dir, err)
	}
	after, _ := os.ReadFile(datadir.Dir(dir).DB())
	if !bytes.Equal(before, after) {
		t.Error("the refused generate changed the vault")
	}
}

func openSized(t *testing.T, dir string) *vault.Store {
	t.Helper()
	key, err := vault.LoadMasterKeyFile(keySource(dir).File)
	if err != nil {
		t.Fatal(err)
	}
	node, err := datadir.Dir(dir).NodeID()
	if err != nil {
		t.Fatal(err)
	}
	st, err := vault.Open(vault.Config{Path: datadir.Dir(dir).DB(), MasterKey: key, NodeID: node})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}
