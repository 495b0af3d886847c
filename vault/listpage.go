package vault

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"slices"
	"sort"

	"github.com/egressd/egressd/vault/storage"
)

// Limits of a page of the lists of secrets, bindings and sandboxes.
const (
	DefaultListLimit = 100
	MaxListLimit     = 1000
)

// Page asks for one page of a list (ListSecretsPage, ListBindingsPage,
// ListSandboxesPage). Rows come in id order; each page goes on after the
// last id of the one before, so rows written or deleted meanwhile do not
// shift the pages: every row that exists from the first page to the last
// is returned exactly once.
type Page struct {
	// Limit is the most rows of the page: zero means DefaultListLimit; at
	// most MaxListLimit.
	Limit int
	// Cursor is the next cursor of the previous page; empty starts at the
	// first row. A cursor is only valid with the tenant and the filter of
	// the page that gave it: any other, or a cursor altered, is refused
	// (ErrInvalid, field "cursor").
	Cursor string
}

func (pg *Page) check() error {
	if pg.Limit < 0 || pg.Limit > MaxListLimit {
		return invalid("limit", "1 to %d (default %d)", MaxListLimit, DefaultListLimit)
	}
	return nil
}

// The lists a cursor can belong to: its second byte.
const (
	listSecrets   byte = 's'
	listBindings  byte = 'b'
	listSandboxes byte = 'x'
)

// A cursor is base64url(version | list | mac | last id), the mac an
// HMAC-SHA256, cut to listMACLen bytes, of the list, the tenant, the
// filter and the id under a key derived from the master key: a cursor
// of another tenant or filter, or altered, does not check and is refused
// before anything is read.
const (
	listCursorVersion = 1
	listMACLen        = 16
)

// listQuery is one list's walk over the rows of type T of a tenant.
type listQuery[T any] struct {
	kind   byte
	tenant string
	// filter is the filter in canonical form (filterKey): what a cursor is
	// bound to, with the tenant.
	filter []byte
	// rows is the rows' bucket, keyed tenant \0 id.
	rows []byte
	// sources returns, in the walk's transaction, the id lists whose
	// intersection holds every matching row (postings, ascending); none
	// means every row of the tenant. An empty one ends the walk at once.
	sources func(tx storage.Tx) ([]postings, error)
	// decode reads a row and says whether it matches the filter.
	decode func(v []byte) (T, bool, error)
}

// runList returns a page of q: up to pg's limit of rows in id order after
// its cursor, and the cursor of the next page ("" after the last row). A
// negative limit returns every row (for callers inside egressd). The
// next cursor is only set when a further row matches, so a page that
// ends the list says so.
func runList[T any](s *Store, q *listQuery[T], pg Page) ([]T, string, error) {
	if q.tenant == "" {
		return nil, "", invalid("tenant_id", "required")
	}
	limit := pg.Limit
	if limit >= 0 {
		if err := pg.check(); err != nil {
			return nil, "", err
		}
		if limit == 0 {
			limit = DefaultListLimit
		}
	}
	var after []byte
	if pg.Cursor != "" {
		id, err := s.openListCursor(q.kind, q.tenant, q.filter, pg.Cursor)
		if err != nil {
			return nil, "", err
		}
		after = id
	}
	out := []T{}
	var next string
	err := s.view(func(tx storage.Tx) error {
		out, next = out[:0], ""
		srcs, err := q.sources(tx)
		if err != nil {
			return err
		}
		rows := tx.Bucket(q.rows)
		p := prefix(q.tenant)
		var last []byte // id of the last row kept
		// take decodes the row of id and keeps it; done once the page is
		// full and one more row matched.
		take := func(id, v []byte) (done bool, err error) {
			x, ok, err := q.decode(v)
			if err != nil || !ok {
				return false, err
			}
			if limit >= 0 && len(out) == limit {
				next = s.listCursor(q.kind, q.tenant, q.filter, last)
				return true, nil
			}
			out = append(out, x)
			last = append(last[:0], id...)
			return false, nil
		}
		if len(srcs) == 0 {
			c := rows.Cursor()
			var k, v []byte
			if after == nil {
				k, v = c.Seek(p)
			} else {
				k, v = c.Seek(append(append(bytes.Clone(p), after...), 0))
			}
			for ; k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
				if done, err := take(k[len(p):], v); done || err != nil {
					return err
				}
			}
			return nil
		}
		// The smallest id after the cursor: after \0.
		target := []byte{}
		if after != nil {
			target = append(bytes.Clone(after), 0)
		}
		next := func(target []byte) []byte { return intersect(srcs, target) }
		if len(srcs) > 1 {
			// A list with few ids left after the cursor drives: each of its
			// ids is looked up in the others. Else the lists leapfrog.
			if drive, rest := smallest(srcs, target); drive != nil {
				next = func(target []byte) []byte {
					for id := drive.seek(target); id != nil; id = drive.seek(target) {
						if hasAll(rest, id) {
							return append(target[:0], id...)
						}
						target = append(append(target[:0], id...), 0)
					}
					return nil
				}
			}
		}
		rk := bytes.Clone(p)
		for {
			id := next(target)
			if id == nil {
				return nil
			}
			rk = append(rk[:len(p)], id...)
			if v := rows.Get(rk); v != nil {
				if done, err := take(id, v); done || err != nil {
					return err
				}
			}
			target = append(id, 0)
		}
	})
	if err != nil {
		return nil, "", err
	}
	return out, next, nil
}

// checkFilterIDs refuses a filter value that no id can hold (and that
// would not make an index key).
func checkFilterIDs(fvs ...fieldValue) error {
	for _, fv := range fvs {
		if !validExternalID(fv.value) {
			return invalid(fv.field, idRule, MaxIDLen)
		}
	}
	return nil
}

// postings is an ascending list of ids that a filter may match.
type postings interface {
	// seek moves to the first id >= target and returns it, or nil past
	// the last. Targets only grow. The id is valid until the next call.
	seek(target []byte) []byte
	// probe reads (apart from seek's position) the ids >= target, up to
	// n of them; complete when no more follow.
	probe(target []byte, n int) (ids [][]byte, complete bool)
	// has reports whether the list holds id.
	has(id []byte) bool
}

// probeIDs bounds the ids a list may have left to drive the walk: one
// read of a pgstore cursor (its first page, 32 keys) tells. A variable
// for the tests, which run both walks.
var probeIDs = 31

// smallest returns, when one of srcs has at most probeIDs ids from target
// on, the shortest such as a list of its own, and the other lists.
func smallest(srcs []postings, target []byte) (postings, []postings) {
	best := -1
	var ids [][]byte
	for i, src := range srcs {
		got, complete := src.probe(target, probeIDs)
		if complete && (best < 0 || len(got) < len(ids)) {
			best, ids = i, got
		}
	}
	if best < 0 {
		return nil, nil
	}
	rest := make([]postings, 0, len(srcs)-1)
	rest = append(append(rest, srcs[:best]...), srcs[best+1:]...)
	return &sortedPostings{ids: ids}, rest
}

func hasAll(srcs []postings, id []byte) bool {
	for _, src := range srcs {
		if !src.has(id) {
			return false
		}
	}
	return true
}

// intersect returns the first id >= target that every list holds, or nil:
// a leapfrog join, each list seeking to the largest id another one
// answered, so the walk costs about as many seeks as the shortest list
// has ids, whichever filter that is. The id returned is target's array.
func intersect(srcs []postings, target []byte) []byte {
	for i, agree := 0, 0; ; i = (i + 1) % len(srcs) {
		x := srcs[i].seek(target)
		if x == nil {
			return nil
		}
		if bytes.Equal(x, target) {
			agree++
		} else {
			target, agree = append(target[:0], x...), 1
		}
		if agree == len(srcs) {
			return target
		}
	}
}

// indexPostings walks one index prefix (tenant \0 field \0 value \0, or an
// older index's tenant \0 value \0); the rest of each key is an id.
type indexPostings struct {
	b      storage.Bucket
	c      storage.Cursor
	prefix []byte
	buf    []byte
	cur    []byte // the id at the cursor; nil before the first seek
	done   bool
}

func newIndexPostings(tx storage.Tx, bucket, prefix []byte) *indexPostings {
	b := tx.Bucket(bucket)
	return &indexPostings{b: b, c: b.Cursor(), prefix: prefix}
}

func (p *indexPostings) probe(t []byte, n int) ([][]byte, bool) {
	var ids [][]byte
	c := p.b.Cursor()
	for k, _ := c.Seek(append(bytes.Clone(p.prefix), t...)); k != nil && bytes.HasPrefix(k, p.prefix); k, _ = c.Next() {
		if len(ids) == n {
			return nil, false
		}
		ids = append(ids, bytes.Clone(k[len(p.prefix):]))
	}
	return ids, true
}

func (p *indexPostings) has(id []byte) bool {
	p.buf = append(append(p.buf[:0], p.prefix...), id...)
	return p.b.Get(p.buf) != nil
}

func (p *indexPostings) seek(t []byte) []byte {
	if p.done {
		return nil
	}
	if p.cur != nil {
		if bytes.Compare(p.cur, t) >= 0 {
			return p.cur
		}
		// A target a few keys on is reached by stepping, which a backend
		// serves from the page it read (pgstore), before seeking.
		for range 4 {
			k, _ := p.c.Next()
			if !p.at(k) {
				return nil
			}
			if bytes.Compare(p.cur, t) >= 0 {
				return p.cur
			}
		}
	}
	// A fresh cursor for a jump: pgstore's reads one short page first,
	// where a cursor that has read already reads a long one.
	p.c = p.b.Cursor()
	p.buf = append(append(p.buf[:0], p.prefix...), t...)
	k, _ := p.c.Seek(p.buf)
	if !p.at(k) {
		return nil
	}
	return p.cur
}

func (p *indexPostings) at(k []byte) bool {
	if k == nil || !bytes.HasPrefix(k, p.prefix) {
		p.cur, p.done = nil, true
		return false
	}
	p.cur = k[len(p.prefix):]
	return true
}

// sortedPostings is a list of ids gathered in the transaction (the
// secrets bound to a resource, the bindings of a user's sandboxes).
type sortedPostings struct {
	ids [][]byte
	i   int
}

// newSortedPostings sorts ids and drops repeats.
func newSortedPostings(ids [][]byte) *sortedPostings {
	slices.SortFunc(ids, bytes.Compare)
	return &sortedPostings{ids: slices.CompactFunc(ids, bytes.Equal)}
}

func (p *sortedPostings) seek(t []byte) []byte {
	rest := p.ids[p.i:]
	p.i += sort.Search(len(rest), func(j int) bool { return bytes.Compare(rest[j], t) >= 0 })
	if p.i == len(p.ids) {
		return nil
	}
	return p.ids[p.i]
}

func (p *sortedPostings) probe(t []byte, n int) ([][]byte, bool) {
	i := sort.Search(len(p.ids), func(j int) bool { return bytes.Compare(p.ids[j], t) >= 0 })
	if len(p.ids)-i > n {
		return nil, false
	}
	return p.ids[i:], true
}

func (p *sortedPostings) has(id []byte) bool {
	_, ok := slices.BinarySearchFunc(p.ids, id, bytes.Compare)
	return ok
}

// filterKey is a filter's canonical form: its values in a fixed order,
// each length-prefixed.
func filterKey(values ...string) []byte {
	var b []byte
	for _, v := range values {
		b = binary.AppendUvarint(b, uint64(len(v)))
		b = append(b, v...)
	}
	return b
}

// idSetKey is an id set's place in a filterKey: "" for nil (no
// restriction), else "+" and the sorted ids, each length-prefixed.
func idSetKey(ids map[string]bool) string {
	if ids == nil {
		return ""
	}
	keys := make([]string, 0, len(ids))
	for id, ok := range ids {
		if ok {
			keys = append(keys, id)
		}
	}
	slices.Sort(keys)
	return "+" + string(filterKey(keys...))
}

// cursorKey is the key of the cursors' MACs, derived from a master key:
// cursors are made with the vault's current key, and checked with each key
// of the ring, so a cursor made just before a rekey still works on a
// replica that holds the old key.
func cursorKey(k *MasterKey) []byte {
	m := hmac.New(sha256.New, k.bytes())
	m.Write([]byte("egressd/list-cursor/v1"))
	return m.Sum(nil)
}

func listMAC(k *MasterKey, kind byte, tenantID string, filter, id []byte) []byte {
	m := hmac.New(sha256.New, cursorKey(k))
	m.Write([]byte{kind})
	m.Write(filterKey(tenantID, string(filter), string(id)))
	return m.Sum(nil)[:listMACLen]
}

// listCursor is the cursor of the page after id.
func (s *Store) listCursor(kind byte, tenantID string, filter, id []byte) string {
	b := make([]byte, 0, 2+listMACLen+len(id))
	b = append(b, listCursorVersion, kind)
	b = append(b, listMAC(s.keys.current(), kind, tenantID, filter, id)...)
	return base64.RawURLEncoding.EncodeToString(append(b, id...))
}

// openListCursor checks a cursor against the list, tenant and filter it
// is presented with and returns the id the page goes on after. Its error
// says nothing of what the cursor holds.
func (s *Store) openListCursor(kind byte, tenantID string, filter []byte, c string) ([]byte, error) {
	bad := invalid("cursor", "not a cursor of this list: it was made for another filter or tenant, or altered (start again without a cursor)")
	if len(c) > 2*MaxIDLen+64 {
		return nil, bad
	}
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil || len(b) < 2+listMACLen+1 || b[0] != listCursorVersion || b[1] != kind {
		return nil, bad
	}
	id := b[2+listMACLen:]
	for _, k := range s.keys.keys {
		if hmac.Equal(b[2:2+listMACLen], listMAC(k, kind, tenantID, filter, id)) {
			return id, nil
		}
	}
	return nil, bad
}
