package vault

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/egressd/egressd/vault/storage"
)

// bReplicas holds, per node id, what a replica serving a shared store
// announced last: the master keys it holds. An online rekey reads it to
// refuse a key some serving replica lacks (it would fail closed the
// moment the rekey commits).
var bReplicas = []byte("replicas") // node id → Replica (JSON)

// ReplicaTTL is how long a replica's announcement counts after it was
// made: three of AnnounceEvery, so one late write does not hide it.
const ReplicaTTL = 90 * time.Second

// AnnounceEvery is how often a replica of a shared store announces itself
// (internal/server).
const AnnounceEvery = 30 * time.Second

// Replica is a serving replica's announcement. It holds key ids, never a
// key.
type Replica struct {
	NodeID string    `json:"node_id"`
	KeyIDs []string  `json:"key_ids"`
	SeenAt time.Time `json:"seen_at"`
}

// Announce records that this node serves the vault now, holding the
// master keys MasterKeyIDs lists. A replica of a shared store calls it at
// start and every AnnounceEvery; Withdraw removes it at a clean stop.
func (s *Store) Announce() error {
	r := Replica{NodeID: s.node, KeyIDs: s.MasterKeyIDs(), SeenAt: s.now().UTC()}
	return s.backend.Update(func(tx storage.Tx) error {
		return putJSON(tx.Bucket(bReplicas), []byte(s.node), r)
	})
}

// Withdraw removes this node's announcement.
func (s *Store) Withdraw() error {
	return s.backend.Update(func(tx storage.Tx) error {
		return tx.Bucket(bReplicas).Delete([]byte(s.node))
	})
}

// liveReplicas lists the announcements made within ReplicaTTL of now, by
// node id. A store made before replicas announced has none.
func liveReplicas(tx storage.Tx, now time.Time) ([]Replica, error) {
	b := tx.Bucket(bReplicas)
	if b == nil {
		return nil, nil
	}
	var out []Replica
	err := b.ForEach(func(_, v []byte) error {
		var r Replica
		if err := unmarshal(v, &r); err != nil {
			return err
		}
		if now.Sub(r.SeenAt) < ReplicaTTL {
			out = append(out, r)
		}
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].NodeID < out[j].NodeID })
	return out, err
}

// checkReplicasHold refuses, with ErrReplicaLacksKey naming them, the
// live replicas that do not hold keyID; ok lists the ones checked.
func checkReplicasHold(tx storage.Tx, now time.Time, keyID string) (checked []string, err error) {
	live, err := liveReplicas(tx, now)
	if err != nil {
		return nil, fmt.Errorf("vault: read the replicas' announcements: %w", err)
	}
	var lacking []string
	for _, r := range live {
		checked = append(checked, r.NodeID)
		if !slices.Contains(r.KeyIDs, keyID) {
			lacking = append(lacking, fmt.Sprintf("%s (holds %s, seen %s ago)", r.NodeID, strings.Join(r.KeyIDs, " and "), now.Sub(r.SeenAt).Round(time.Second)))
		}
	}
	if len(lacking) > 0 {
		return checked, fmt.Errorf("%w %s: %s", ErrReplicaLacksKey, keyID, strings.Join(lacking, "; "))
	}
	return checked, nil
}
