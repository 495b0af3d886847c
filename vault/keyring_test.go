package vault

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/egressd/egressd/certs"
	"github.com/egressd/egressd/vault/storage"
)

func mustRing(tb testing.TB, first *MasterKey, others ...*MasterKey) *keyRing {
	tb.Helper()
	r, err := newKeyRing(first, others)
	if err != nil {
		tb.Fatal(err)
	}
	return r
}

// secretKeyID is the master key id that wraps a secret's stored value.
func secretKeyID(tb testing.TB, s *Store, tenantID, secretID string) string {
	tb.Helper()
	var row storedSecret
	if err := unmarshal(rawRow(tb, s, bSecrets, key(tenantID, secretID)), &row); err != nil {
		tb.Fatal(err)
	}
	return row.Value.KeyID
}

// noFeed hides a backend's change feed: a replica that hears nothing.
type noFeed struct{ storage.Backend }

// A replica whose ring holds the old and the new key keeps opening every
// value across an online rekey, and seals with the key the canary names
// in the write's own transaction: a write made after the rekey committed,
// before the replica heard of it, is wrapped by the new key (else dropping
// the old key later would lose it).
func TestRekeyStoreOnline(t *testing.T) {
	oldKey, newKey := NewMasterKey(), NewMasterKey()
	var f *fakeFeed
	s := openTest(t, func(c *Config) {
		c.MasterKey, c.OtherKeys = oldKey, []*MasterKey{newKey}
		f = newFakeFeed(t, *c)
		c.Backend = f
	})
	if got := s.MasterKeyIDs(); !slices.Equal(got, []string{oldKey.ID(), newKey.ID()}) {
		t.Fatalf("MasterKeyIDs %q", got)
	}
	if s.MasterKeyID() != oldKey.ID() || s.KeyStatus() != nil {
		t.Fatalf("new vault: sealed by %s (%v), want the ring's first key %s", s.MasterKeyID(), s.KeyStatus(), oldKey.ID())
	}
	tn := mustTenant(t, s, "acme")
	a := mustUpsert(t, s, tn.ID, SecretInput{Name: "A", Value: "va", RefreshToken: "ra", Scope: ScopeTenant, AllowedHosts: []string{"a.example"}}).Secret
	b := mustUpsert(t, s, tn.ID, SecretInput{Name: "B", Value: "vb", Scope: ScopeTenant, AllowedHosts: []string{"b.example"}}).Secret
	if _, _, _, err := s.SharedCA(certs.NewCAPEM); err != nil {
		t.Fatal(err)
	}
	f.published(t)
	var seen []string
	s.OnKeyChange(func(id string, held bool) { seen = append(seen, fmt.Sprintf("%s %v", id, held)) })

	res, err := RekeyStore(f, "test store", []*MasterKey{oldKey}, newKey, false)
	if err != nil {
		t.Fatal(err)
	}
	if res.OldKeyID != oldKey.ID() || res.NewKeyID != newKey.ID() || res.Secrets != 2 {
		t.Fatalf("rekey result %+v", res)
	}
	if got := f.published(t); !slices.Equal(got, []string{topicMasterKey}) {
		t.Fatalf("rekey published %q, want [%s]", got, topicMasterKey)
	}
	// Not heard yet: the replica still names the old key, opens both.
	if s.MasterKeyID() != oldKey.ID() {
		t.Fatalf("sealed by %s before the feed delivered", s.MasterKeyID())
	}
	if v := mustOpenValue(t, s, tn.ID, a.ID); v != "va" {
		t.Fatalf("value after rekey %q", v)
	}
	if _, err := s.RotateSecret(tn.ID, b.ID, RotateInput{Value: "vb2"}); err != nil {
		t.Fatal(err)
	}
	if got := secretKeyID(t, s, tn.ID, b.ID); got != newKey.ID() {
		t.Fatalf("a write after the rekey sealed with %s, want the new key %s", got, newKey.ID())
	}
	if s.MasterKeyID() != newKey.ID() {
		t.Fatalf("the write saw the new canary but MasterKeyID is %s", s.MasterKeyID())
	}
	f.deliver(topicMasterKey) // heard late: no second change
	if want := []string{newKey.ID() + " true"}; !slices.Equal(seen, want) {
		t.Fatalf("OnKeyChange saw %q, want %q", seen, want)
	}
	if _, err := RekeyStore(f, "test store", []*MasterKey{oldKey, newKey}, newKey, false); !errors.Is(err, ErrAlreadyRekeyed) {
		t.Fatalf("second rekey: %v, want ErrAlreadyRekeyed", err)
	}
	s.Close()

	// The old key dropped: everything opens with the new key alone, the
	// old alone opens nothing.
	// The fake feed's store is a bbolt file whatever backend the suite
	// runs on: reopen that file.
	cfg := Config{Path: s.Path(), MasterKey: newKey, Timeout: time.Second}
	cfg.Backend = openBoltTestBackend(t, cfg)
	s2, err := openCfg(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	for id, want := range map[string]string{a.ID: "va", b.ID: "vb2"} {
		if v := mustOpenValue(t, s2, tn.ID, id); v != want {
			t.Fatalf("%s: %q, want %q", id, v, want)
		}
	}
	if _, refresh, _, err := openValue(s2, tn.ID, a.ID); err != nil || refresh != "ra" {
		t.Fatalf("refresh token after rekey: %v", err)
	}
	if _, _, _, err := s2.SharedCA(nil); err != nil {
		t.Fatalf("shared CA after rekey: %v", err)
	}
	s2.Close()
	cfg = Config{Path: s.Path(), MasterKey: oldKey, Timeout: time.Second}
	cfg.Backend = openBoltTestBackend(t, cfg)
	if s3, err := Open(cfg); !errors.Is(err, ErrWrongMasterKey) {
		if s3 != nil {
			s3.Close()
		}
		t.Fatalf("old key alone after rekey: %v, want ErrWrongMasterKey", err)
	}
	cfg.Backend.Close() // a failed Open leaves a given backend open
}

// A replica that does not hold the new key fails closed once it hears of
// the rekey (or whenever a write reads the canary): KeyStatus says which
// key it needs, sealing writes and opening re-wrapped values fail with
// ErrMasterKeyNotHeld, and the store keeps what it had.
func TestRekeyStoreReplicaWithoutNewKey(t *testing.T) {
	for _, topic := range []string{topicMasterKey, storage.TopicAll} {
		t.Run(topic, func(t *testing.T) {
			oldKey, newKey := NewMasterKey(), NewMasterKey()
			var f *fakeFeed
			s := openTest(t, func(c *Config) {
				c.MasterKey = oldKey
				f = newFakeFeed(t, *c)
				c.Backend = f
			})
			tn := mustTenant(t, s, "acme")
			a := mustUpsert(t, s, tn.ID, SecretInput{Name: "A", Value: "va", Scope: ScopeTenant, AllowedHosts: []string{"a.example"}}).Secret
			if _, err := RekeyStore(f, "test store", []*MasterKey{oldKey}, newKey, false); err != nil {
				t.Fatal(err)
			}
			if err := s.KeyStatus(); err != nil {
				t.Fatalf("status before the feed delivered: %v", err)
			}
			var seen []string
			s.OnKeyChange(func(id string, held bool) { seen = append(seen, fmt.Sprintf("%s %v", id, held)) })
			f.deliver(topic)
			if want := []string{newKey.ID() + " false"}; !slices.Equal(seen, want) {
				t.Fatalf("OnKeyChange saw %q, want %q", seen, want)
			}
			err := s.KeyStatus()
			if !errors.Is(err, ErrMasterKeyNotHeld) || !strings.Contains(err.Error(), newKey.ID()) {
				t.Fatalf("status after the rekey: %v, want ErrMasterKeyNotHeld naming %s", err, newKey.ID())
			}
			if _, _, _, err := openValue(s, tn.ID, a.ID); !errors.Is(err, ErrMasterKeyNotHeld) {
				t.Fatalf("open after the rekey: %v", err)
			}
			if _, err := s.RotateSecret(tn.ID, a.ID, RotateInput{Value: "vx"}); !errors.Is(err, ErrMasterKeyNotHeld) {
				t.Fatalf("rotate without the new key: %v", err)
			}
			if _, err := s.UpsertSecret(tn.ID, SecretInput{Name: "C", Value: "vc", Scope: ScopeTenant, AllowedHosts: []string{"c.example"}}); !errors.Is(err, ErrMasterKeyNotHeld) {
				t.Fatalf("create without the new key: %v", err)
			}
			if got := secretKeyID(t, s, tn.ID, a.ID); got != newKey.ID() {
				t.Fatalf("refused rotate changed the row: wrapped by %s", got)
			}
		})
	}
}

// RekeyStore refuses keys that do not open the vault, and changes nothing;
// a ring is at most two distinct keys.
func TestRekeyStoreRefuses(t *testing.T) {
	oldKey := NewMasterKey()
	s := openTest(t, func(c *Config) { c.MasterKey = oldKey })
	mustTenant(t, s, "acme")
	if _, err := RekeyStore(s.backend, "test store", []*MasterKey{NewMasterKey()}, NewMasterKey(), false); !errors.Is(err, ErrWrongMasterKey) {
		t.Fatalf("rekey with a foreign key: %v", err)
	}
	if err := s.view(func(tx storage.Tx) error { return checkCanary(tx.Bucket(bMeta).Get(metaCanary), oldKey) }); err != nil {
		t.Fatalf("a refused rekey changed the canary: %v", err)
	}
	k := NewMasterKey()
	for name, others := range map[string][]*MasterKey{"three keys": {NewMasterKey(), NewMasterKey()}, "twice": {k, k}} {
		_, err := Open(Config{Path: filepath.Join(t.TempDir(), "v.db"), MasterKey: k, OtherKeys: others})
		if !errors.Is(err, ErrBadMasterKey) {
			t.Errorf("%s: Open %v, want ErrBadMasterKey", name, err)
		}
	}
}

// A list cursor made before a rekey still works after it on a replica
// that holds both keys.
func TestListCursorAcrossRekey(t *testing.T) {
	oldKey, newKey := NewMasterKey(), NewMasterKey()
	var f *fakeFeed
	s := openTest(t, func(c *Config) {
		c.MasterKey, c.OtherKeys = oldKey, []*MasterKey{newKey}
		f = newFakeFeed(t, *c)
		c.Backend = f
	})
	tn := mustTenant(t, s, "acme")
	for _, n := range []string{"A", "B", "C"} {
		mustUpsert(t, s, tn.ID, SecretInput{Name: n, Value: "v", Scope: ScopeTenant, AllowedHosts: []string{"a.example"}})
	}
	c := s.listCursor('s', tn.ID, nil, []byte("x"))
	if _, err := RekeyStore(f, "test store", []*MasterKey{oldKey}, newKey, false); err != nil {
		t.Fatal(err)
	}
	f.deliver(topicMasterKey)
	if s.MasterKeyID() != newKey.ID() {
		t.Fatalf("after the delivery sealed by %s", s.MasterKeyID())
	}
	if _, err := s.openListCursor('s', tn.ID, nil, c); err != nil {
		t.Fatalf("cursor made before the rekey: %v", err)
	}
	if _, err := s.openListCursor('s', tn.ID, nil, s.listCursor('s', tn.ID, nil, []byte("x"))); err != nil {
		t.Fatalf("cursor made after the rekey: %v", err)
	}
}

// On PostgreSQL, with real replicas: replica A holds the old and the new
// key, replica C only the old, replica D hears no change feed at all. An
// online rekey from a third connection (the CLI's) reaches A and C through
// the feed within the deadline: A seals with the new key and opens
// everything, C fails closed; D's write, sealed in its own transaction
// after the rekey, is wrapped by the new key although D never heard of it.
// Every value then opens with the new key alone.
func TestRekeyStoreReplicasOnPostgres(t *testing.T) {
	dsn := testDSN(t)
	schema := freshPostgresSchema(t, dsn)
	oldKey, newKey := NewMasterKey(), NewMasterKey()
	dir := t.TempDir()
	open := func(node string, b storage.Backend, first *MasterKey, others ...*MasterKey) *Store {
		t.Helper()
		s, err := Open(Config{Path: filepath.Join(dir, node), Backend: b, NodeID: node, MasterKey: first, OtherKeys: others})
		if err != nil {
			b.Close()
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	a := open("a", openPostgres(t, dsn, schema), oldKey, newKey)
	c := open("c", openPostgres(t, dsn, schema), oldKey)
	d := open("d", noFeed{openPostgres(t, dsn, schema)}, oldKey, newKey)
	tn := mustTenant(t, a, "acme")
	var ids []string
	for _, n := range []string{"A", "B", "C"} {
		ids = append(ids, mustUpsert(t, a, tn.ID, SecretInput{Name: n, Value: "v" + n, RefreshToken: "r" + n, Scope: ScopeTenant, AllowedHosts: []string{"a.example"}}).Secret.ID)
	}
	if _, _, _, err := a.SharedCA(certs.NewCAPEM); err != nil {
		t.Fatal(err)
	}
	if v := mustOpenValue(t, c, tn.ID, ids[0]); v != "vA" {
		t.Fatalf("C before the rekey: %q", v)
	}

	cli := openPostgres(t, dsn, schema)
	res, err := RekeyStore(cli, "test store", []*MasterKey{oldKey}, newKey, false)
	cli.Close()
	if err != nil {
		t.Fatal(err)
	}
	if res.Secrets != 3 {
		t.Fatalf("rekey result %+v", res)
	}
	start := time.Now()
	for a.MasterKeyID() != newKey.ID() || c.KeyStatus() == nil {
		if time.Since(start) > 5*time.Second {
			t.Fatalf("after 5s: A sealed by %s, C status %v", a.MasterKeyID(), c.KeyStatus())
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("the rekey reached both replicas in %v", time.Since(start))
	if err := c.KeyStatus(); !errors.Is(err, ErrMasterKeyNotHeld) {
		t.Fatalf("C: %v", err)
	}
	if _, err := c.RotateSecret(tn.ID, ids[0], RotateInput{Value: "vx"}); !errors.Is(err, ErrMasterKeyNotHeld) {
		t.Fatalf("C's rotate: %v", err)
	}
	if d.MasterKeyID() != oldKey.ID() {
		t.Fatalf("D without a feed saw %s", d.MasterKeyID())
	}
	if _, err := d.RotateSecret(tn.ID, ids[1], RotateInput{Value: "vB2"}); err != nil {
		t.Fatal(err)
	}
	if got := secretKeyID(t, d, tn.ID, ids[1]); got != newKey.ID() {
		t.Fatalf("D's rotate after the rekey sealed with %s", got)
	}
	if _, err := a.RotateSecret(tn.ID, ids[2], RotateInput{Value: "vC2"}); err != nil {
		t.Fatal(err)
	}
	only := open("n", openPostgres(t, dsn, schema), newKey)
	for i, want := range []string{"vA", "vB2", "vC2"} {
		v, r, _, err := openValue(only, tn.ID, ids[i])
		if err != nil || v != want || r != "r"+string(rune('A'+i)) {
			t.Fatalf("secret %d with the new key alone: %q, %v", i, v, err)
		}
	}
	if _, _, _, err := only.SharedCA(nil); err != nil {
		t.Fatalf("shared CA with the new key alone: %v", err)
	}
}
