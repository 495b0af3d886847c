package vault

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/egressd/egressd/audit"
	"github.com/egressd/egressd/vault/storage"
)

// CopyOptions configures CopyStore.
type CopyOptions struct {
	// MasterKey is the vault's master key. Required: the source's canary
	// is checked with it before anything is written, the copy's sealed
	// values are opened with it afterwards (to check them, never kept),
	// and it seals the CA given below. The copy itself opens nothing.
	MasterKey *MasterKey
	// Buckets are the source's buckets, as its backend lists them (a
	// bbolt file can); every one is copied, with the vault's own. Nil
	// means the vault's own only.
	Buckets [][]byte
	// CACertPEM and CAKeyPEM, when set, are stored in the copy as its
	// shared CA (SharedCA), the key sealed: the CA a single node kept in
	// its data dir goes along, so sandboxes keep trusting what they
	// trusted. A source that holds a shared CA already is refused then.
	CACertPEM, CAKeyPEM []byte
}

// CopyResult says what CopyStore copied and checked.
type CopyResult struct {
	// Buckets is how many keys each bucket holds in the copy, counted
	// after the copy committed; each equals the source's (CopyStore
	// fails otherwise). Empty buckets are listed with 0. "audit" counts
	// the audit log's rows, which are copied as rows into the copy's
	// layout (its buckets, or a backend's own table: storage.AuditStore);
	// the audit index buckets are not listed.
	Buckets map[string]int `json:"buckets"`
	// Keys is their sum.
	Keys int `json:"keys"`
	// ValuesOpened is how many sealed values (secrets' values and refresh
	// tokens) were opened in the copy with the master key, all of them.
	ValuesOpened int `json:"values_opened"`
	// SharedCA says the copy holds a shared CA whose key opened.
	SharedCA bool `json:"shared_ca"`
}

// CopyStore copies the vault in src into dst key by key, every bucket as
// it is: values stay the ciphertext they are, bound to their tenant, secret
// and version, and tokens stay hashes, so with the same master key every
// placeholder, proxy token and API key works on dst as on src. dst must
// hold no key in any bucket (ErrStoreNotEmpty): a copy never merges two
// vaults. Everything is written in one transaction of dst, so a copy that
// fails leaves dst as empty as it was and can run again. Afterwards the
// keys of every bucket are counted in both and must be equal, and every
// sealed value of dst is opened (ErrDecrypt otherwise); nothing opened is
// kept or shown. src must not change meanwhile (the server stopped).
func CopyStore(dst, src storage.Backend, opts CopyOptions) (CopyResult, error) {
	if opts.MasterKey == nil {
		return CopyResult{}, errors.New("vault: copy: no master key")
	}
	if (len(opts.CACertPEM) == 0) != (len(opts.CAKeyPEM) == 0) {
		return CopyResult{}, errors.New("vault: copy: the CA needs its certificate and its key")
	}
	names := copyBuckets(opts.Buckets)
	srcHasCA := false
	srcAudit, err := audit.StoreOf(src)
	if err != nil {
		return CopyResult{}, fmt.Errorf("vault: copy: %w", err)
	}
	err = src.View(func(tx storage.Tx) error {
		meta := tx.Bucket(bMeta)
		if meta == nil || meta.Get(metaCanary) == nil {
			return errors.New("vault: copy: the source is not an egressd vault")
		}
		if v := meta.Get(metaSchema); string(v) != schemaVersion {
			return fmt.Errorf("vault: copy: the source has schema %q, this build reads %q", v, schemaVersion)
		}
		srcHasCA = meta.Get(metaSharedCA) != nil
		return checkCanary(meta.Get(metaCanary), opts.MasterKey)
	})
	if err != nil {
		return CopyResult{}, err
	}
	if srcHasCA && len(opts.CACertPEM) > 0 {
		return CopyResult{}, errors.New("vault: copy: the source holds a shared CA already; it is copied as it is, give no other")
	}
	if err := dst.EnsureBuckets(append(names, allBuckets...)...); err != nil {
		return CopyResult{}, fmt.Errorf("vault: copy: %w", err)
	}
	dstAudit, err := audit.StoreOf(dst)
	if err != nil {
		return CopyResult{}, fmt.Errorf("vault: copy: %w", err)
	}
	err = dst.Update(func(dtx storage.Tx) error {
		for _, name := range names {
			if k, _ := dtx.Bucket(name).Cursor().First(); k != nil {
				return fmt.Errorf("vault: copy: %w (bucket %s holds keys)", ErrStoreNotEmpty, name)
			}
		}
		if n, err := countAuditRows(dtx, dstAudit); err != nil || n > 0 {
			if err == nil {
				err = fmt.Errorf("vault: copy: %w (the audit log holds %d rows)", ErrStoreNotEmpty, n)
			}
			return err
		}
		if err := audit.CopyRows(dtx, src, srcAudit); err != nil {
			return err
		}
		err := src.View(func(stx storage.Tx) error {
			for _, name := range names {
				from := stx.Bucket(name)
				if from == nil {
					continue // a bucket of the vault's that this source never made
				}
				to := dtx.Bucket(name)
				if err := from.ForEach(func(k, v []byte) error {
					// Copied: src's slices end with its View, dst may keep
					// what Put gets until its commit.
					return to.Put(bytes.Clone(k), bytes.Clone(v))
				}); err != nil {
					return fmt.Errorf("vault: copy bucket %s: %w", name, err)
				}
			}
			return nil
		})
		if err != nil || len(opts.CACertPEM) == 0 {
			return err
		}
		return putSharedCA(dtx.Bucket(bMeta), opts.MasterKey, opts.CACertPEM, opts.CAKeyPEM, time.Now().UTC().Truncate(time.Microsecond))
	})
	if err != nil {
		return CopyResult{}, err
	}
	return verifyCopy(dst, src, names, opts, dstAudit, srcAudit)
}

// countAuditRows counts the audit rows of tx's store: as's, or bAudit's.
func countAuditRows(tx storage.Tx, as storage.AuditStore) (int, error) {
	if as != nil {
		n, err := as.CountAudit()
		return int(n), err
	}
	if b := tx.Bucket(bAudit); b != nil {
		return countBucket(b), nil
	}
	return 0, nil
}

// verifyCopy counts every bucket in dst and src, and opens every sealed
// value of dst and its shared CA.
func verifyCopy(dst, src storage.Backend, names [][]byte, opts CopyOptions, dstAudit, srcAudit storage.AuditStore) (CopyResult, error) {
	count := func(b storage.Backend, as storage.AuditStore) (map[string]int, error) {
		out := map[string]int{}
		err := b.View(func(tx storage.Tx) error {
			for _, name := range names {
				n := 0
				if bk := tx.Bucket(name); bk != nil {
					n = countBucket(bk)
				}
				out[string(name)] = n
			}
			n, err := countAuditRows(tx, as)
			out[string(bAudit)] = n
			return err
		})
		return out, err
	}
	srcN, err := count(src, srcAudit)
	if err != nil {
		return CopyResult{}, err
	}
	res := CopyResult{}
	if res.Buckets, err = count(dst, dstAudit); err != nil {
		return CopyResult{}, err
	}
	names = append(names, bAudit)
	if len(opts.CACertPEM) > 0 {
		srcN[string(bMeta)]++ // the shared CA the copy added
	}
	for _, name := range names {
		n := string(name)
		if res.Buckets[n] != srcN[n] {
			return res, fmt.Errorf("vault: copy: bucket %s holds %d keys in the copy and %d in the source", n, res.Buckets[n], srcN[n])
		}
		res.Keys += res.Buckets[n]
	}
	err = dst.View(func(tx storage.Tx) error {
		meta := tx.Bucket(bMeta)
		if err := checkCanary(meta.Get(metaCanary), opts.MasterKey); err != nil {
			return err
		}
		_, _, found, err := readSharedCA(meta, opts.MasterKey)
		if err != nil {
			return err
		}
		res.SharedCA = found
		return tx.Bucket(bSecrets).ForEach(func(_, v []byte) error {
			var row storedSecret
			if err := unmarshal(v, &row); err != nil {
				return err
			}
			for _, f := range []struct {
				s     *sealed
				field string
			}{{row.Value, "value"}, {row.Refresh, "refresh_token"}} {
				if f.s == nil {
					continue
				}
				pt, err := opts.MasterKey.open(f.s, valueAD(row.TenantID, row.ID, row.Version, f.field))
				if err != nil {
					return fmt.Errorf("vault: copy: secret %s: %w", row.ID, err)
				}
				clear(pt)
				res.ValuesOpened++
			}
			return nil
		})
	})
	if err != nil {
		return res, err
	}
	return res, nil
}

func countBucket(b storage.Bucket) int {
	n := 0
	c := b.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		n++
	}
	return n
}

// copyBuckets is the vault's buckets and extra, each once, sorted; but
// not the audit log's, which is copied as rows (audit.CopyRows).
func copyBuckets(extra [][]byte) [][]byte {
	seen := map[string]bool{}
	for _, b := range audit.Buckets() {
		seen[string(b)] = true
	}
	var out [][]byte
	for _, list := range [][][]byte{allBuckets, extra} {
		for _, n := range list {
			if !seen[string(n)] {
				seen[string(n)] = true
				out = append(out, n)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return bytes.Compare(out[i], out[j]) < 0 })
	return out
}
