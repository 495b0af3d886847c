package vault

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/egressd/egressd/audit"
	"github.com/egressd/egressd/vault/boltstore"
	"github.com/egressd/egressd/vault/storage"
)

// RekeyResult says what Rekey did.
type RekeyResult struct {
	Secrets  int    `json:"secrets"`
	OldKeyID string `json:"old_key_id"`
	NewKeyID string `json:"new_key_id"`
	// Replicas are the node ids of the replicas an online rekey found
	// serving (announced within ReplicaTTL), each checked to hold the new
	// key; ReplicasLacking names those that did not, when the rekey was
	// told to go on regardless.
	Replicas        []string `json:"replicas,omitempty"`
	ReplicasLacking string   `json:"replicas_lacking_key,omitempty"`
}

// Rekey re-wraps every data key in the file at path from oldKey to newKey in
// one transaction. Ciphertexts are not touched and no plaintext value is
// ever decrypted or written: only data keys pass through memory. After it,
// the old key fails to open the vault. The file must not be open elsewhere
// (the server stopped); otherwise Rekey fails with ErrLocked after timeout.
func Rekey(path string, oldKey, newKey *MasterKey, timeout time.Duration) (RekeyResult, error) {
	res := RekeyResult{OldKeyID: oldKey.ID(), NewKeyID: newKey.ID()}
	if oldKey.Equal(newKey) {
		return res, errors.New("vault: the new master key is the same as the old one")
	}
	if timeout == 0 {
		timeout = time.Second
	}
	// Opening would create a missing file: a mistyped --data-dir must not
	// leave an empty vault behind.
	if _, err := os.Stat(path); err != nil {
		return res, fmt.Errorf("vault: %w", err)
	}
	db, err := boltstore.Open(path, boltstore.Options{Timeout: timeout})
	if err != nil {
		if errors.Is(err, storage.ErrLocked) {
			return res, fmt.Errorf("vault: open %s: %w", path, ErrLocked)
		}
		return res, fmt.Errorf("vault: open %s: %w", path, err)
	}
	defer db.Close()
	err = db.Update(func(tx storage.Tx) error { return rekeyTx(tx, path, oldKey, newKey, &res) })
	return res, err
}

// RekeyStore re-wraps every data key of the vault in backend, a store
// that serving replicas share (vault/pgstore), in one Update transaction:
// online, as the backend's updates are serialized with the replicas'. held
// are the keys the operator holds (one, or the replicas' ring of two):
// the one the vault's canary names is the old key. Within the same
// transaction the canary then names newKey (so every replica's next write
// seals with it: keyring.go) and, on a backend with a change feed,
// topicMasterKey is published, so each replica reads the canary again as
// soon as the rekey commits. Replicas must hold newKey
// before (their ring: the old key and the new one); one that does not
// fails closed (Store.KeyStatus): a replica serving the store that
// announced (Store.Announce) keys without newKey makes the rekey
// ErrReplicaLacksKey, and nothing changes, unless ignoreReplicas. name
// names the store in errors. A vault already sealed by newKey is
// ErrAlreadyRekeyed and is left as it is.
func RekeyStore(backend storage.Backend, name string, held []*MasterKey, newKey *MasterKey, ignoreReplicas bool) (RekeyResult, error) {
	res := RekeyResult{NewKeyID: newKey.ID()}
	err := backend.Update(func(tx storage.Tx) error {
		meta := tx.Bucket(bMeta)
		if meta == nil || meta.Get(metaCanary) == nil {
			return fmt.Errorf("vault: %s holds no egressd vault", name)
		}
		id, err := canaryKeyID(meta)
		if err != nil {
			return err
		}
		res.OldKeyID = id
		if id == newKey.ID() {
			return fmt.Errorf("vault: %w: %s is sealed by master key %s", ErrAlreadyRekeyed, name, id)
		}
		var oldKey *MasterKey
		for _, k := range held {
			if k.ID() == id {
				oldKey = k
			}
		}
		if oldKey == nil {
			ids := make([]string, len(held))
			for i, k := range held {
				ids[i] = k.ID()
			}
			return fmt.Errorf("vault: %w: %s is sealed by master key %s, the keys given are %s", ErrWrongMasterKey, name, id, strings.Join(ids, " and "))
		}
		res.Replicas, err = checkReplicasHold(tx, time.Now(), newKey.ID())
		if errors.Is(err, ErrReplicaLacksKey) && ignoreReplicas {
			res.ReplicasLacking, err = err.Error(), nil
		}
		if err != nil {
			return err
		}
		if err := rekeyTx(tx, name, oldKey, newKey, &res); err != nil {
			return err
		}
		if feed, ok := backend.(storage.ChangeFeed); ok {
			return feed.Publish(tx, topicMasterKey)
		}
		return nil
	})
	return res, err
}

// rekeyTx re-wraps every data key in one transaction of any backend: the
// canary, the shared CA's key, every secret's value and refresh token, the
// OAuth state; then
// records it on every tenant's admin log. name names the store in errors.
func rekeyTx(tx storage.Tx, name string, oldKey, newKey *MasterKey, res *RekeyResult) error {
	meta := tx.Bucket(bMeta)
	if meta == nil || meta.Get(metaCanary) == nil {
		return fmt.Errorf("vault: %s is not an egressd vault", name)
	}
	if err := checkCanary(meta.Get(metaCanary), oldKey); err != nil {
		return err
	}
	var c sealed
	if err := json.Unmarshal(meta.Get(metaCanary), &c); err != nil {
		return err
	}
	nc, err := oldKey.rewrap(&c, []byte("egressd/canary"), newKey)
	if err != nil {
		return err
	}
	if err := putJSON(meta, metaCanary, nc); err != nil {
		return err
	}
	if err := rekeySharedCA(meta, oldKey, newKey); err != nil {
		return err
	}
	b := tx.Bucket(bSecrets)
	type update struct {
		k   []byte
		row storedSecret
	}
	var updates []update
	err = b.ForEach(func(k, v []byte) error {
		var row storedSecret
		if err := unmarshal(v, &row); err != nil {
			return err
		}
		if row.Value != nil {
			nv, err := oldKey.rewrap(row.Value, valueAD(row.TenantID, row.ID, row.Version, "value"), newKey)
			if err != nil {
				return fmt.Errorf("secret %s: %w", row.ID, err)
			}
			row.Value = nv
		}
		if row.Refresh != nil {
			nr, err := oldKey.rewrap(row.Refresh, valueAD(row.TenantID, row.ID, row.Version, "refresh_token"), newKey)
			if err != nil {
				return fmt.Errorf("secret %s refresh token: %w", row.ID, err)
			}
			row.Refresh = nr
		}
		updates = append(updates, update{k: append([]byte(nil), k...), row: row})
		return nil
	})
	if err != nil {
		return err
	}
	for _, u := range updates {
		if err := putJSON(b, u.k, &u.row); err != nil {
			return err
		}
	}
	res.Secrets = len(updates)
	if err := rekeyOAuth(tx, oldKey, newKey); err != nil {
		return err
	}
	return auditRekey(tx, res)
}

// auditRekey appends to every tenant's log an admin row saying the
// operator re-wrapped its data keys, in the rekey's own transaction: the
// master key ids (never a key) and how many secrets the vault holds.
func auditRekey(tx storage.Tx, res *RekeyResult) error {
	now := time.Now().UTC().Truncate(time.Microsecond)
	return tx.Bucket(bTenants).ForEach(func(id, _ []byte) error {
		row := audit.Row{
			TenantID: string(id), Kind: audit.KindAdmin, Action: ActionVaultRekeyed, Time: now,
			ActorKind: ActorCLI, ActorID: "egressd vault rekey",
			Details: map[string]string{"old_master_key_id": res.OldKeyID, "new_master_key_id": res.NewKeyID, "vault_secrets": itoa(res.Secrets)},
		}
		return audit.Put(tx, row, time.Now)
	})
}
