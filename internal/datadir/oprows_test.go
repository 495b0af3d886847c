package datadir

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/egressd/egressd/audit"
	"github.com/egressd/egressd/vault"
)

// adminActions lists the actions of a tenant's admin rows with their actor.
func adminActions(t *testing.T, st *vault.Store, tenantID string) map[string]audit.Row {
	t.Helper()
	out := map[string]audit.Row{}
	if err := st.ExportAudit(tenantID, time.Time{}, func(r audit.Row) error {
		if r.Kind == audit.KindAdmin {
			out[r.Action] = r
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestOperatorActionsOnRecord: egressd init (the tenant, its admin key, the
// operator key with it), the first run of serve and vault rekey each leave
// admin rows in the tenant's log, naming the command as a CLI actor.
func TestOperatorActionsOnRecord(t *testing.T) {
	dir := Dir(t.TempDir())
	src := fileSource(t, dir)
	res, err := Init(dir, src, "acme")
	if err != nil {
		t.Fatal(err)
	}
	st := openStore(t, dir, src)
	rows := adminActions(t, st, res.TenantID)
	created, key := rows[vault.ActionTenantCreated], rows[vault.ActionAPIKeyIssued]
	if created.ActorKind != vault.ActorCLI || created.ActorID != "egressd init" {
		t.Fatalf("tenant.created: %+v", created)
	}
	if key.ActorID != "egressd init" || key.Details["operator_key_issued"] != "true" || key.Details["key_id"] == "" {
		t.Fatalf("api_key.issued: %+v", key)
	}
	st.Close()

	if _, err := Rekey(dir, src, filepath.Join(t.TempDir(), "new.key"), 0); err != nil {
		t.Fatal(err)
	}
	st = openStore(t, dir, src)
	re := adminActions(t, st, res.TenantID)[vault.ActionVaultRekeyed]
	if re.ActorKind != vault.ActorCLI || re.Details["new_master_key_id"] == "" || re.Details["old_master_key_id"] == re.Details["new_master_key_id"] {
		t.Fatalf("vault.rekeyed: %+v", re)
	}

	// serve's first run: Bootstrap.
	fresh := Dir(t.TempDir())
	o, err := Open(fresh, fileSource(t, fresh))
	if err != nil {
		t.Fatal(err)
	}
	defer o.Store.Close()
	c, ok, err := Bootstrap(o.Store)
	if err != nil || !ok {
		t.Fatalf("bootstrap: %v %v", ok, err)
	}
	if r := adminActions(t, o.Store, c.TenantID)[vault.ActionTenantCreated]; r.ActorID != "egressd serve (first run)" {
		t.Fatalf("first run: %+v", r)
	}
}
