package audit

import (
	"bytes"
	"fmt"

	"github.com/egressd/egressd/vault/storage"
)

// metaAuditLayout is the key in bMeta that says the audit buckets are in
// layout 2 (the keys of auditPos, binary rows): set on a new vault, and
// on an older one once migrateAuditLayout has moved every row.
var metaAuditLayout = []byte("audit_layout")

const auditLayout = "2"

// auditMigrateChunk is how many rows migrateAuditLayout moves a
// transaction.
const auditMigrateChunk = 1000

// migrateAuditLayout rewrites the audit buckets of a vault written
// before layout 2 (keys with the ids as text, JSON rows; about 1.8 KB of
// file a row against under 500 B): every row is read, deleted with its
// index entries and put again, in Updates of auditMigrateChunk rows,
// each whole or not at all, so an interrupted Open goes on where it
// stopped. It runs once, at Open, before the journal's rows are put.
func (l *Log) migrateAuditLayout() error {
	var done bool
	if err := l.db.View(func(tx storage.Tx) error {
		done = string(tx.Bucket(bMeta).Get(metaAuditLayout)) == auditLayout
		return nil
	}); err != nil || done {
		return err
	}
	var from []byte
	for {
		n := 0
		err := l.db.Update(func(tx storage.Tx) error {
			b := kvAuditBuckets(tx)
			type old struct {
				k []byte
				r Row
				e auditEntry
			}
			var olds []old
			c := b.rows.Cursor()
			k, v := c.First()
			if from != nil {
				k, v = c.Seek(from)
			}
			for ; k != nil && len(olds) < auditMigrateChunk; k, v = c.Next() {
				if !isLegacyRowKey(k) {
					continue
				}
				var o old
				if err := decodeAuditRow(v, k, &o.r); err != nil {
					return fmt.Errorf("audit row %q: %w", k, err)
				}
				r := o.r
				e, err := r.prepare(l.now)
				if err != nil {
					return fmt.Errorf("audit row %q: %w", k, err)
				}
				o.k, o.e = bytes.Clone(k), e
				olds = append(olds, o)
			}
			for i := range olds {
				if err := b.delete(olds[i].k, &olds[i].r); err != nil {
					return err
				}
			}
			for i := range olds {
				if err := b.put(&olds[i].e); err != nil {
					return err
				}
			}
			if n = len(olds); n > 0 {
				from = olds[n-1].k
			}
			if n < auditMigrateChunk {
				return tx.Bucket(bMeta).Put(metaAuditLayout, []byte(auditLayout))
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("audit: migrate the log to layout %s: %w", auditLayout, err)
		}
		if n < auditMigrateChunk {
			return nil
		}
	}
}
