package vault

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/egressd/egressd/vault/storage"
)

// TestRekeyStoreChecksReplicas: an online rekey to a key that a serving
// replica announced it lacks is refused, naming the replica, and changes
// nothing; once the replica holds both keys it goes on.
func TestRekeyStoreChecksReplicas(t *testing.T) {
	oldKey, newKey := NewMasterKey(), NewMasterKey()
	s := openTest(t, func(c *Config) { c.MasterKey, c.NodeID = oldKey, "r1" })
	tn := mustTenant(t, s, "acme")
	sec := mustUpsert(t, s, tn.ID, SecretInput{Name: "A", Value: "va", Scope: ScopeTenant, AllowedHosts: []string{"a.example"}}).Secret
	if err := s.Announce(); err != nil {
		t.Fatal(err)
	}
	_, err := RekeyStore(s.backend, "test store", []*MasterKey{oldKey}, newKey, false)
	if !errors.Is(err, ErrReplicaLacksKey) || !strings.Contains(err.Error(), "r1 (holds "+oldKey.ID()) {
		t.Fatalf("rekey past a replica without the new key: %v, want ErrReplicaLacksKey naming r1", err)
	}
	if got := secretKeyID(t, s, tn.ID, sec.ID); got != oldKey.ID() {
		t.Fatalf("the refused rekey re-wrapped a value (%s)", got)
	}
	if err := s.Withdraw(); err != nil {
		t.Fatal(err)
	}
	if live := replicasOf(t, s); len(live) != 0 {
		t.Fatalf("after Withdraw: %+v", live)
	}

	// r1 restarted holding both keys.
	cfg := Config{Path: s.Path(), MasterKey: oldKey, OtherKeys: []*MasterKey{newKey}, NodeID: "r1", Timeout: 200 * time.Millisecond, NoSync: true}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	cfg.Backend = newTestBackend(t, cfg)
	s, err = Open(cfg)
	if err != nil {
		cfg.Backend.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.Announce(); err != nil {
		t.Fatal(err)
	}
	if live := replicasOf(t, s); len(live) != 1 || !slices.Equal(live[0].KeyIDs, []string{oldKey.ID(), newKey.ID()}) {
		t.Fatalf("announced %+v", live)
	}
	res, err := RekeyStore(s.backend, "test store", []*MasterKey{oldKey}, newKey, false)
	if err != nil || !slices.Equal(res.Replicas, []string{"r1"}) || res.ReplicasLacking != "" {
		t.Fatalf("rekey with every replica holding the key: %+v %v", res, err)
	}
	if v := mustOpenValue(t, s, tn.ID, sec.ID); v != "va" {
		t.Fatalf("value after rekey %q", v)
	}
}

// TestRekeyStoreReplicaExpired: an announcement older than ReplicaTTL (a
// replica that died without withdrawing) holds up no rekey; with
// ignoreReplicas a fresh one does not either, and is reported.
func TestRekeyStoreReplicaExpired(t *testing.T) {
	oldKey, newKey := NewMasterKey(), NewMasterKey()
	var clock time.Time
	s := openTest(t, func(c *Config) {
		c.MasterKey, c.NodeID = oldKey, "gone"
		c.Now = func() time.Time { return clock }
	})
	clock = time.Now().Add(-ReplicaTTL - time.Second)
	if err := s.Announce(); err != nil {
		t.Fatal(err)
	}
	if _, err := RekeyStore(s.backend, "test store", []*MasterKey{oldKey}, newKey, false); err != nil {
		t.Fatalf("an expired announcement held up the rekey: %v", err)
	}
	other := NewMasterKey()
	clock = time.Now()
	if err := s.Announce(); err != nil {
		t.Fatal(err)
	}
	res, err := RekeyStore(s.backend, "test store", []*MasterKey{newKey}, other, true)
	if err != nil || !strings.Contains(res.ReplicasLacking, "gone (holds "+oldKey.ID()) {
		t.Fatalf("ignoreReplicas: %+v %v", res, err)
	}
}

func replicasOf(t *testing.T, s *Store) []Replica {
	t.Helper()
	var live []Replica
	err := s.backend.View(func(tx storage.Tx) error {
		var err error
		live, err = liveReplicas(tx, time.Now())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return live
}
