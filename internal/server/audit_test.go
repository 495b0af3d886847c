package server

import (
	"errors"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/egressd/egressd/audit"
	"github.com/egressd/egressd/vault"
	"github.com/egressd/egressd/vault/boltstore"
	"github.com/egressd/egressd/vault/storage"
)

// failingBackend fails every Update while failing is set: the store
// cannot take the audit rows (a PostgreSQL gone; vault's own tests cut a
// real one).
type failingBackend struct {
	storage.Backend
	failing atomic.Bool
}

func (f *failingBackend) Update(fn func(storage.Tx) error) error {
	if f.failing.Load() {
		return errors.New("store unreachable")
	}
	return f.Backend.Update(fn)
}

// /readyz's audit check is false while the audit rows cannot be shipped,
// true again once they are; the spool metrics follow.
func TestAuditReady(t *testing.T) {
	dir := t.TempDir()
	bs, err := boltstore.Open(filepath.Join(dir, "v.db"), boltstore.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	fb := &failingBackend{Backend: bs}
	st, err := vault.Open(vault.Config{Backend: fb, JournalPath: filepath.Join(dir, "journal"), MasterKey: vault.NewMasterKey(), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	reg := prometheus.NewRegistry()
	reg.MustRegister(auditCollectors(st)...)
	row := audit.Row{Kind: audit.KindRequest, TenantID: "ten_a"}
	if err := st.AppendAudit(row); err != nil {
		t.Fatal(err)
	}
	if err := auditReady(st); err != nil {
		t.Fatalf("shipping works: %v", err)
	}
	fb.failing.Store(true)
	if err := st.AppendAudit(row); err != nil {
		t.Fatal(err)
	}
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !ok(); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("no %s within 10s", what)
			}
		}
	}
	waitFor("audit check failing", func() bool { return auditReady(st) != nil })
	if err := auditReady(st); !strings.Contains(err.Error(), "store unreachable") {
		t.Fatalf("audit check: %v", err)
	}
	if m := metricValues(t, reg); m["egressd_audit_spool_depth"] < 1 || m["egressd_audit_ship_errors_total"] < 1 {
		t.Fatalf("metrics while shipping fails: %v", m)
	}
	fb.failing.Store(false)
	waitFor("audit check passing", func() bool { return auditReady(st) == nil })
	waitFor("empty spool", func() bool { return st.AuditShipping().Spooled == 0 })
	if m := metricValues(t, reg); m["egressd_audit_spool_depth"] != 0 || m["egressd_audit_ship_errors_total"] < 1 {
		t.Fatalf("metrics after: %v", m)
	}
}

// metricValues are the values of reg's unlabelled gauges and counters.
func metricValues(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			switch {
			case m.GetGauge() != nil:
				out[mf.GetName()] = m.GetGauge().GetValue()
			case m.GetCounter() != nil:
				out[mf.GetName()] = m.GetCounter().GetValue()
			}
		}
	}
	return out
}
