package datadir

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/egressd/egressd/vault"
	"github.com/egressd/egressd/vault/storage"
)

// DefaultTenant is the tenant serve creates on an empty data dir.
const DefaultTenant = "default"

// Credentials are tokens minted for a tenant. They are shown once and
// never stored in clear; printing the struct with %v or slog redacts them.
type Credentials struct {
	TenantID   string `json:"tenant_id"`
	TenantName string `json:"tenant_name"`
	// APIKey is a new admin key of the tenant.
	APIKey string `json:"api_key"`
	// OperatorKey is set only when the operator key was created now.
	OperatorKey string `json:"operator_key,omitempty"`
}

// String shows the tenant, never a token.
func (c Credentials) String() string {
	return fmt.Sprintf("Credentials{tenant %s %q, tokens redacted}", c.TenantID, c.TenantName)
}

// LogValue shows the tenant, never a token.
func (c Credentials) LogValue() slog.Value {
	return slog.GroupValue(slog.String("tenant_id", c.TenantID), slog.String("tenant_name", c.TenantName),
		slog.Bool("operator_key_created", c.OperatorKey != ""))
}

// IssueKeys returns the tenant named name (creating it if absent) with a
// new admin key, and the operator key if none existed yet. The tenant's
// log gets an admin row for its creation and one for the key (which says
// whether the operator key was issued with it), their actor the command
// by (a CLI actor: "egressd init").
func IssueKeys(st *vault.Store, name, by string) (Credentials, error) {
	st = st.As(vault.Actor{Kind: vault.ActorCLI, ID: by})
	t, _, err := st.EnsureTenant(name)
	if err != nil {
		return Credentials{}, fmt.Errorf("tenant %q: %w", name, err)
	}
	op, err := st.EnsureOperatorKey()
	if err != nil {
		return Credentials{}, fmt.Errorf("operator key: %w", err)
	}
	keys := st
	if op != "" {
		keys = st.WithAudit("", map[string]string{"operator_key_issued": "true"})
	}
	token, _, err := keys.CreateAPIKey(t.ID, vault.KeyAdmin, "", 0)
	if err != nil {
		return Credentials{}, fmt.Errorf("admin key for tenant %q: %w", name, err)
	}
	return Credentials{TenantID: t.ID, TenantName: t.Name, APIKey: token, OperatorKey: op}, nil
}

// bootstrapLock is the lock Bootstrap holds, and bootstrapWait how long it
// waits for it (another replica's first run takes a few writes).
const (
	bootstrapLock = "first-run:bootstrap"
	bootstrapWait = time.Minute
)

// Bootstrap sets up a vault that holds no tenant yet: it creates the
// default tenant and issues its keys (see IssueKeys). On a vault that has a
// tenant it does nothing and returns ok false: nothing secret to show.
//
// It looks and creates while holding the vault's lock bootstrapLock
// (vault.Store.WithLock): on a store several replicas share it is held
// across all of them, so of replicas starting together on an empty store
// exactly one creates the tenant and prints its keys, and the others find
// the tenant.
func Bootstrap(st *vault.Store) (c Credentials, ok bool, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), bootstrapWait)
	defer cancel()
	err = st.WithLock(ctx, bootstrapLock, func(ctx context.Context) error {
		ts, err := st.Tenants()
		if err != nil || len(ts) > 0 {
			return err
		}
		if err := ctx.Err(); err != nil { // the lock was lost: another may hold it
			return err
		}
		c, err = IssueKeys(st, DefaultTenant, "egressd serve (first run)")
		ok = err == nil
		return err
	})
	if err != nil {
		return Credentials{}, false, err
	}
	return c, ok, nil
}

// InitResult is what egressd init prints: one JSON object.
type InitResult struct {
	Credentials
	// DataDir and CACertFile are the data dir's (bbolt); Store names a
	// shared store instead (InitStore), whose CA is fetched from the API.
	DataDir          string `json:"data_dir,omitempty"`
	Store            string `json:"store,omitempty"`
	MasterKeyCreated bool   `json:"master_key_created"`
	CACreated        bool   `json:"ca_created"`
	CACertFile       string `json:"ca_cert_file,omitempty"`
}

// Init creates, where absent, everything a data dir holds (see Open), the
// tenant, a new admin key for it and the operator key (once). Running it
// again creates a new admin key and touches nothing else.
func Init(dir Dir, src KeySource, tenant string) (InitResult, error) {
	if abs, err := filepath.Abs(string(dir)); err == nil {
		dir = Dir(abs)
	}
	o, err := Open(dir, src)
	if err != nil {
		return InitResult{}, err
	}
	c, err := IssueKeys(o.Store, tenant, "egressd init")
	if cerr := o.Store.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close vault: %w", cerr)
	}
	if err != nil {
		return InitResult{}, err
	}
	return InitResult{
		Credentials:      c,
		DataDir:          string(dir),
		MasterKeyCreated: o.MasterKeyCreated,
		CACreated:        o.CACreated,
		CACertFile:       dir.CACert(),
	}, nil
}

// InitStore is Init on a shared store (egressd init --store): it creates,
// where absent, the vault (sealed by the first key of src) and the shared
// CA in backend, then the tenant, a new admin key and the operator key
// (once), as the first replica's first run would. Replicas started after
// it find the tenant and print nothing. The master key must exist
// (CheckShared, before open connects to the store): it is never created
// for a shared store. name names the store (without its password).
func InitStore(src KeySource, open func() (storage.Backend, error), name, tenant string) (InitResult, error) {
	if err := src.CheckShared(); err != nil {
		return InitResult{}, err
	}
	backend, err := open()
	if err != nil {
		return InitResult{}, err
	}
	o, done, err := OpenTool(src, backend, name, false)
	if err != nil {
		return InitResult{}, err
	}
	c, err := IssueKeys(o.Store, tenant, "egressd init")
	if cerr := done(); err == nil && cerr != nil {
		err = fmt.Errorf("close vault: %w", cerr)
	}
	if err != nil {
		return InitResult{}, err
	}
	return InitResult{Credentials: c, Store: name, CACreated: o.CACreated}, nil
}
