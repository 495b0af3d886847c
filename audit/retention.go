package audit

import (
	"bytes"
	"container/heap"
	"time"

	"github.com/egressd/egressd/vault/storage"
)

// DefaultPruneBatch is the batch Prune uses when given none.
const DefaultPruneBatch = 1000

// auditExportBatch is how many rows Export reads in one read
// transaction before it hands them to its callback.
const auditExportBatch = 512

// Prune deletes every audit row (of every tenant) older than before,
// with its index entries. On a backend that keeps the audit log itself
// (storage.AuditStore) the backend deletes them its way: vault/pgstore
// drops the partitions of whole days before it and deletes the rest, and
// batch is not used. Otherwise it works in write transactions of at most batch
// rows each (zero means DefaultPruneBatch), so request rows waiting
// for their group commit wait for one small transaction at a time, and
// loops until no old row is left. It returns how many rows it deleted,
// also when a later transaction fails.
func (l *Log) Prune(before time.Time, batch int) (deleted int, err error) {
	if batch < 0 {
		return 0, invalid("batch", "must not be negative")
	}
	if batch == 0 {
		batch = DefaultPruneBatch
	}
	if before.Year() < 1970 {
		return 0, nil
	}
	if before.Year() > 2200 {
		return 0, invalid("before", "out of range")
	}
	if err := l.Sync(); err != nil {
		return 0, err
	}
	if l.as != nil {
		n, err := l.as.DeleteAudit(before)
		return int(n), err
	}
	limit := auditTime(before)
	for {
		n := 0
		err := l.db.Update(func(tx storage.Tx) error {
			n = 0
			b := txAuditBuckets(tx)
			type victim struct {
				k []byte
				r Row
			}
			var vs []victim
			c := b.rows.Cursor()
			for k, v := c.First(); k != nil && len(vs) < batch; {
				i := bytes.IndexByte(k, 0)
				if i < 0 || len(k) < i+1+auditTimeLen {
					k, v = c.Next()
					continue
				}
				if bytes.Compare(k[i+1:i+1+auditTimeLen], limit) < 0 {
					var r Row
					if err := decodeAuditRow(v, k, &r); err != nil {
						return err
					}
					vs = append(vs, victim{bytes.Clone(k), r})
					k, v = c.Next()
					continue
				}
				// This tenant's other rows are newer: on to the next tenant.
				k, v = c.Seek(append(bytes.Clone(k[:i]), 1))
			}
			for i := range vs {
				if err := b.delete(vs[i].k, &vs[i].r); err != nil {
					return err
				}
			}
			n = len(vs)
			return nil
		})
		if err != nil {
			return deleted, err
		}
		deleted += n
		if n < batch {
			return deleted, nil
		}
	}
}

// Export calls fn with every audit row of the tenant (of every
// tenant when tenantID is empty) from since on (zero: from the first),
// oldest first; rows of several tenants are merged in time order. It
// reads the log in short read transactions of a few hundred rows and
// calls fn outside them, so a slow consumer holds no transaction. Rows
// appended while it runs are included if they are newer than those
// already given. An error from fn stops the export and is returned.
func (l *Log) Export(tenantID string, since time.Time, fn func(Row) error) error {
	if since.Year() > 2200 {
		return invalid("since", "out of range")
	}
	if err := l.Sync(); err != nil {
		return err
	}
	if l.as != nil {
		return l.exportAuditStore(tenantID, since, fn)
	}
	var start []byte
	if since.Year() >= 1970 {
		start = auditTime(since)
	}
	// pos holds, per tenant, the key suffix (time \0 id) of the last row
	// given to fn.
	pos := map[string][]byte{}
	for {
		var rows []Row
		err := l.db.View(func(tx storage.Tx) error {
			b := tx.Bucket(bAudit)
			tenants := []string{tenantID}
			if tenantID == "" {
				tenants = auditTenants(b)
			}
			var h exportHeap
			for _, t := range tenants {
				e := &exportHead{tenant: t, p: append([]byte(t), 0), c: b.Cursor()}
				var k, v []byte
				if last := pos[t]; last != nil {
					seek := append(bytes.Clone(e.p), last...)
					if k, v = e.c.Seek(seek); bytes.Equal(k, seek) {
						k, v = e.c.Next()
					}
				} else {
					k, v = e.c.Seek(append(bytes.Clone(e.p), start...))
				}
				if e.set(k, v) {
					h = append(h, e)
				}
			}
			heap.Init(&h)
			for len(h) > 0 && len(rows) < auditExportBatch {
				e := h[0]
				var r Row
				if err := decodeAuditRow(e.v, e.k, &r); err != nil {
					return err
				}
				rows = append(rows, r)
				pos[e.tenant] = bytes.Clone(e.k[len(e.p):])
				if e.set(e.c.Next()) {
					heap.Fix(&h, 0)
				} else {
					heap.Pop(&h)
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, r := range rows {
			if err := fn(r); err != nil {
				return err
			}
		}
		if len(rows) < auditExportBatch {
			return nil
		}
	}
}

// auditTenants lists the tenants that have audit rows, by skipping from
// each tenant's first key to the next tenant's.
func auditTenants(b storage.Bucket) []string {
	var out []string
	c := b.Cursor()
	for k, _ := c.First(); k != nil; {
		i := bytes.IndexByte(k, 0)
		if i < 0 {
			k, _ = c.Next()
			continue
		}
		out = append(out, string(k[:i]))
		k, _ = c.Seek(append(bytes.Clone(k[:i]), 1))
	}
	return out
}

// exportHead is a tenant's next row in a merge of several tenants.
type exportHead struct {
	tenant string
	p      []byte // tenant \0
	c      storage.Cursor
	k, v   []byte
}

// set makes k, v the head and reports whether it is a row of the tenant.
func (e *exportHead) set(k, v []byte) bool {
	e.k, e.v = k, v
	if k == nil || !bytes.HasPrefix(k, e.p) {
		return false
	}
	_, _, ok := splitPos(k, len(e.p))
	return ok
}

// exportHeap orders heads by time, then id, then tenant.
type exportHeap []*exportHead

func (h exportHeap) Len() int { return len(h) }
func (h exportHeap) Less(i, j int) bool {
	if c := bytes.Compare(h[i].k[len(h[i].p):], h[j].k[len(h[j].p):]); c != 0 {
		return c < 0
	}
	return h[i].tenant < h[j].tenant
}
func (h exportHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *exportHeap) Push(x any)   { *h = append(*h, x.(*exportHead)) }
func (h *exportHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
