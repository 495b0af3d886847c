package audit

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"math"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/egressd/egressd/vault/storage"
)

// How the audit log is laid out in the file: rows in bAudit, one index
// bucket per filterable id; the keys are described at auditPos. Ids of
// tenants and values never hold a \0 (Row.prepare refuses them), so
// a row key's tenant ends where its \0 is.

// RowsBucket is the bucket of the audit rows (keyed auditRowKey); its
// indexes are the other buckets of Buckets.
const RowsBucket = "audit"

var (
	bAudit = []byte(RowsBucket) // tenant \0 time id → Row (auditPos, bin.go)
	// bMeta is the vault's meta bucket, which the vault creates: the log
	// keeps its journal positions (journalPosKey) and its layout
	// (metaAuditLayout) there.
	bMeta = []byte("meta")
)

// Index buckets of the audit log, each keyed auditIndexKey with an empty
// value; the row is found in bAudit from the key alone.
var (
	bAuditByExtUser      = []byte("audit_ext_user")      // external_user_id
	bAuditByExtWorkspace = []byte("audit_ext_workspace") // external_workspace_id
	bAuditBySandbox      = []byte("audit_sandbox")       // sandbox_id
	bAuditBySecret       = []byte("audit_secret")        // secret_id and every Uses[].secret_id
)

// auditIndex is one index: its bucket and the values of a row it holds
// (appended to dst: a caller's array on its stack keeps them off the
// heap).
type auditIndex struct {
	bucket []byte
	values func(r *Row, dst []string) []string
}

// auditIndexes are in order of selectivity, most selective first: a
// query filtering on several ids walks the first one it names and checks
// the others on each row (one sandbox has one user; one user has a few
// sandboxes; a tenant-wide secret may be in every row).
var auditIndexes = [auditIndexCount]auditIndex{
	{bAuditBySandbox, func(r *Row, dst []string) []string { return r.indexValues(0, dst) }},
	{bAuditByExtUser, func(r *Row, dst []string) []string { return r.indexValues(1, dst) }},
	{bAuditBySecret, func(r *Row, dst []string) []string { return r.indexValues(2, dst) }},
	{bAuditByExtWorkspace, func(r *Row, dst []string) []string { return r.indexValues(3, dst) }},
}

// indexValues appends r's values in index i (of auditIndexes) to dst,
// as auditIndexes[i].values does; called directly, it lets r stay on its
// caller's stack.
func (r *Row) indexValues(i int, dst []string) []string {
	switch i {
	case 0:
		return one(dst, r.SandboxID)
	case 1:
		return one(dst, r.ExternalUserID)
	case 2:
		return r.appendSecretIDs(dst)
	default:
		return one(dst, r.ExternalWorkspaceID)
	}
}

// Buckets are the audit log's buckets, the rows' then the indexes', for
// the vault to create at open (storage.Backend.EnsureBuckets) and to
// leave out of what it copies key by key (CopyRows copies the rows).
func Buckets() [][]byte {
	out := make([][]byte, 0, 1+len(auditIndexes))
	out = append(out, bAudit)
	for _, ix := range auditIndexes {
		out = append(out, ix.bucket)
	}
	return out
}

func one(dst []string, v string) []string {
	if v == "" {
		return dst
	}
	return append(dst, v)
}

// secretIDs are the distinct secrets a row is about: its SecretID and
// those of its Uses.
func (r *Row) secretIDs() []string { return r.appendSecretIDs(nil) }

func (r *Row) appendSecretIDs(dst []string) []string {
	out := one(dst, r.SecretID)
	for _, u := range r.Uses {
		if u.SecretID != "" && !contains(out[len(dst):], u.SecretID) {
			out = append(out, u.SecretID)
		}
	}
	return out
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// auditTime encodes t as 8 big-endian bytes that sort as the times do
// (nanoseconds since 1970 with the sign bit flipped).
func auditTime(t time.Time) []byte {
	var b [auditTimeLen]byte
	binary.BigEndian.PutUint64(b[:], uint64(t.UnixNano())^(1<<63))
	return b[:]
}

func parseAuditTime(b []byte) time.Time {
	return time.Unix(0, int64(binary.BigEndian.Uint64(b)^(1<<63))).UTC()
}

// The keys (layout 2, metaAuditLayout): a row is at tenant \0 time id in
// bAudit, where time is auditTime's 8 bytes and id the row id as
// appendAuditID writes it (its 8 random bytes for an id of NewID's
// over the row's time); an index entry is at auditIndexPrefix(tenant,
// value) time id, with an empty value. The part after the prefix (time
// id, the row's position) is the same in both, so an index entry names
// its row's key. Layout 1, of vault files written before it (migrated at
// Open, migrateAuditLayout), was tenant \0 time \0 id and tenant \0
// value \0 time \0 id with the id as text.

// auditPos is a row's position: its time and id, as its keys end.
func auditPos(tb []byte, id string) []byte {
	return appendAuditID(append(make([]byte, 0, auditTimeLen+10+len(id)), tb...), id, tb)
}

// auditRowKey is the row's key in bAudit: tenant \0 pos.
func auditRowKey(tenant string, pos []byte) []byte {
	k := make([]byte, 0, len(tenant)+1+len(pos))
	return append(append(append(k, tenant...), 0), pos...)
}

// auditIndexPrefixLen is the length of an index key's prefix.
const auditIndexPrefixLen = 8

// auditIndexPrefix is where an index's entries of value, of tenant,
// start: 8 bytes of a 64-bit FNV-1a hash of tenant \0 value, not the ids
// themselves (about 50 bytes), which cost most of an entry. Two pairs
// that share a prefix only make a query read the other's entries too:
// each row read is checked against the filter (Filter.match) and
// fetched under the querying tenant's own key, so no row of another
// tenant or value is ever returned.
func auditIndexPrefix(tenant, value string) []byte {
	return appendAuditIndexPrefix(make([]byte, 0, auditIndexPrefixLen+auditTimeLen+10), tenant, value)
}

func appendAuditIndexPrefix(b []byte, tenant, value string) []byte {
	const offset, prime = 14695981039346656037, 1099511628211
	h := uint64(offset)
	for i := 0; i < len(tenant); i++ {
		h = (h ^ uint64(tenant[i])) * prime
	}
	h *= prime // the \0 between them
	for i := 0; i < len(value); i++ {
		h = (h ^ uint64(value[i])) * prime
	}
	return binary.BigEndian.AppendUint64(b, h)
}

// splitAuditRowKey reads a bAudit key of layout 2.
func splitAuditRowKey(k []byte) (tenant, tb, idPart []byte, ok bool) {
	i := bytes.IndexByte(k, 0)
	if i < 0 || len(k) < i+1+auditTimeLen+1 || k[i+1+auditTimeLen] == 0 {
		return nil, nil, nil, false
	}
	return k[:i], k[i+1 : i+1+auditTimeLen], k[i+1+auditTimeLen:], true
}

// splitPos reads a position (time id, layout 2) after a key's prefix of
// n bytes.
func splitPos(k []byte, n int) (tb, idPart []byte, ok bool) {
	rest := k[n:]
	if len(rest) < auditTimeLen+2 || rest[auditTimeLen] == 0 {
		return nil, nil, false
	}
	return rest[:auditTimeLen], rest[auditTimeLen:], true
}

// auditIDOfSuffix reads the id of a position's id part, of a row at tb.
func auditIDOfSuffix(tb, idPart []byte) (string, bool) {
	d := binReader{b: idPart}
	id := d.auditID(tb)
	return id, !d.bad && len(d.b) == 0 && id != ""
}

// legacyAuditKey is a key of layout 1: pre \0 time \0 id, where pre is
// the tenant, or tenant \0 value.
func legacyAuditKey(pre string, tb []byte, id string) []byte {
	k := make([]byte, 0, len(pre)+2+len(tb)+len(id))
	k = append(k, pre...)
	k = append(k, 0)
	k = append(k, tb...)
	k = append(k, 0)
	return append(k, id...)
}

// isLegacyRowKey says k is a bAudit key of layout 1.
func isLegacyRowKey(k []byte) bool {
	i := bytes.IndexByte(k, 0)
	return i >= 0 && len(k) > i+1+auditTimeLen && k[i+1+auditTimeLen] == 0
}

// auditEntry is a row ready to put: its key, its encodings and its index
// keys, built before a commit so the committer only writes; and the same
// as a record for a backend that keeps the audit log itself (rec, whose
// Data is val).
type auditEntry struct {
	key []byte
	// val is the full encoding (the journal's record, rec.Data), bval
	// the keyed one (the bucket's value).
	val, bval []byte
	// pos is the row's position; idx the prefixes of its entries in
	// each index (auditIndexPrefix).
	pos []byte
	idx [auditIndexCount][][]byte
	rec storage.AuditRecord
}

// prepare validates r, fills in ID and Time, drops a query string from
// Path, and encodes the row.
func (r *Row) prepare(now func() time.Time) (auditEntry, error) {
	var e auditEntry
	if r.Kind != KindRequest && r.Kind != KindAdmin {
		return e, invalid("kind", "must be %q or %q", KindRequest, KindAdmin)
	}
	if r.TenantID == "" {
		return e, invalid("tenant_id", "required")
	}
	if r.Time.IsZero() {
		r.Time = now()
	}
	r.Time = r.Time.UTC()
	if y := r.Time.Year(); y < 1970 || y > 2200 {
		return e, invalid("time", "out of range")
	}
	if r.ID == "" {
		r.ID = NewID(r.Time)
	} else if !validAuditID(r.ID) {
		return e, invalid("id", "1 to %d bytes of [A-Za-z0-9_.-]", maxAuditIDLen)
	}
	if i := strings.IndexAny(r.Path, "?#"); i >= 0 {
		r.Path = r.Path[:i]
	}
	r.Path = truncateUTF8(r.Path, maxAuditPath)
	for _, f := range [...]struct{ name, v string }{
		{"tenant_id", r.TenantID}, {"workspace_id", r.WorkspaceID}, {"owner_user_id", r.OwnerUserID},
		{"external_user_id", r.ExternalUserID}, {"external_workspace_id", r.ExternalWorkspaceID},
		{"external_project_id", r.ExternalProjectID}, {"sandbox_id", r.SandboxID}, {"secret_id", r.SecretID},
	} {
		// The ids are parts of keys: no \0, and bounded.
		if len(f.v) > maxAuditField || strings.IndexByte(f.v, 0) >= 0 {
			return e, invalid(f.name, "at most %d bytes, no NUL", maxAuditField)
		}
	}
	for _, u := range r.Uses {
		if len(u.SecretID) > maxAuditField || strings.IndexByte(u.SecretID, 0) >= 0 {
			return e, invalid("uses.secret_id", "at most %d bytes, no NUL", maxAuditField)
		}
	}
	if math.IsNaN(r.DurationMS) || math.IsInf(r.DurationMS, 0) {
		return e, invalid("duration_ms", "must be a finite number")
	}
	if len(r.TenantID)+1+auditTimeLen+4+len(r.ID) > storage.MaxKeySize {
		return e, invalid("tenant_id", "at most %d bytes", maxAuditField)
	}
	// One buffer for the row's position, key, both encodings and index
	// prefixes, built in a pooled scratch buffer and copied to one of its
	// size: one allocation a row, not seven (a 512-byte buffer among
	// them). The id is parsed once, for the position; the full encoding
	// takes its bytes from there.
	tb := auditTime(r.Time)
	sp := prepareScratch.Get().(*[]byte)
	s := append((*sp)[:0], tb...)
	s = appendAuditID(s, r.ID, tb)
	np := len(s) // s[:np] is the position
	s = append(append(s, r.TenantID...), 0)
	s = append(s, s[:np]...)
	nk := len(s) // s[np:nk] the key
	s = r.appendBinaryBody(append(s, auditBinKeyed))
	nb := len(s) // s[nk:nb] the keyed encoding (the bucket's value)
	s = append(s, auditBinFull)
	s = binary.AppendUvarint(s, uint64(r.Time.UnixNano()))
	s = append(s, s[auditTimeLen:np]...)
	s = appendAuditStr(s, r.TenantID)
	s = append(s, s[nk+1:nb]...)
	nf := len(s) // s[nb:nf] the full one (the journal's record, a table's Data)
	// The prefixes: a row has at most one value an index but for its
	// secrets (its own and its uses').
	var vals [auditIndexCount][]string
	var arr [8]string
	nv := 0
	for i := range auditIndexes {
		var dst []string
		if nv < len(arr) {
			dst = arr[nv:nv:len(arr)]
		}
		vals[i] = r.indexValues(i, dst)
		nv += len(vals[i])
		for _, v := range vals[i] {
			s = appendAuditIndexPrefix(s, r.TenantID, v)
		}
	}
	buf := make([]byte, len(s))
	copy(buf, s)
	if cap(s) <= 4096 {
		*sp = s
		prepareScratch.Put(sp)
	}
	e.pos, e.key, e.bval, e.val = buf[:np:np], buf[np:nk:nk], buf[nk:nb:nb], buf[nb:nf:nf]
	prefixes := make([][]byte, nv)
	at := nf
	for i := range vals {
		e.idx[i] = prefixes[:len(vals[i]):len(vals[i])]
		prefixes = prefixes[len(vals[i]):]
		for j := range e.idx[i] {
			e.idx[i][j] = buf[at : at+auditIndexPrefixLen : at+auditIndexPrefixLen]
			at += auditIndexPrefixLen
		}
	}
	e.rec = r.record(e.val)
	return e, nil
}

// prepareScratch holds prepare's scratch buffers.
var prepareScratch = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// record is r as an audit store keeps it, data its full encoding.
func (r *Row) record(data []byte) storage.AuditRecord {
	rec := storage.AuditRecord{
		TenantID: r.TenantID, Time: r.Time, ID: r.ID, Kind: r.Kind, Outcome: r.Outcome,
		ExternalUserID: r.ExternalUserID, ExternalWorkspaceID: r.ExternalWorkspaceID,
		SandboxID: r.SandboxID, SecretID: r.SecretID, Data: data,
	}
	for _, u := range r.Uses {
		if u.SecretID != "" && u.SecretID != r.SecretID && !contains(rec.UseSecretIDs, u.SecretID) {
			rec.UseSecretIDs = append(rec.UseSecretIDs, u.SecretID)
		}
	}
	return rec
}

func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// auditFill is the FillHint of bAudit: each tenant's rows are appended
// at its end. The index buckets keep bbolt's default (half): there the
// appends land at some ten thousand places (one a tenant and value), so
// a page split 90/10 leaves the 10% page to fill with keys that arrive
// at random, measured at 200,000 rows: 40% of their pages in use
// against 68% with the default.
const auditFill = 0.9

// auditBuckets are the audit log's buckets in one transaction; or, on a
// backend that keeps the audit log itself (storage.AuditTx), that
// transaction alone.
type auditBuckets struct {
	atx  storage.AuditTx
	rows storage.Bucket
	idx  [auditIndexCount]storage.Bucket
	cur  [auditIndexCount]storage.Cursor // of idx, made on first use
}

// cursor is index i's cursor for this transaction's writes.
func (b *auditBuckets) cursor(i int) storage.Cursor {
	if b.cur[i] == nil {
		b.cur[i] = b.idx[i].Cursor()
	}
	return b.cur[i]
}

func txAuditBuckets(tx storage.Tx) auditBuckets {
	if atx, ok := tx.(storage.AuditTx); ok {
		return auditBuckets{atx: atx}
	}
	return kvAuditBuckets(tx)
}

// kvAuditBuckets are the audit buckets of tx, whatever the backend.
func kvAuditBuckets(tx storage.Tx) auditBuckets {
	b := auditBuckets{rows: tx.Bucket(bAudit)}
	// Rows of one tenant are mostly appended in time order: fill pages
	// fuller than bbolt's default half before splitting them (a hint
	// other backends may ignore).
	b.rows.FillHint(auditFill)
	for i, ix := range auditIndexes {
		b.idx[i] = tx.Bucket(ix.bucket)
	}
	return b
}

// put writes e. A row written again (same tenant, time and id: the
// proxy's provisional row replaced by its final one) replaces the old one
// and its index entries.
func (b *auditBuckets) put(e *auditEntry) error {
	if b.atx != nil {
		return b.atx.PutAudit([]storage.AuditRecord{e.rec})
	}
	if add, err := b.putRow(e); err != nil || !add {
		return err
	}
	for i, prefixes := range e.idx {
		for _, p := range prefixes {
			if err := addPosting(b.idx[i], b.cursor(i), p, e.pos); err != nil {
				return err
			}
		}
	}
	return nil
}

// putAll writes entries, whose keys are distinct, as put writes each; on
// a key-value backend the index entries of all of them are added
// afterwards, sorted, each run of one index and prefix with one Put a
// chunk (addPostings) instead of one Put, and a copy of the chunk, a row:
// the rows of one sandbox, user or secret arrive together, and a
// transaction of a thousand rows rewrote the same chunk a thousand times.
// A row replacing one already stored has the old one's entries removed
// first, as put does; with distinct keys no removal touches a position
// added here.
func (b *auditBuckets) putAll(entries []auditEntry) error {
	if b.atx != nil {
		for i := range entries {
			if err := b.put(&entries[i]); err != nil {
				return err
			}
		}
		return nil
	}
	n := 0
	for i := range entries {
		for _, prefixes := range entries[i].idx {
			n += len(prefixes)
		}
	}
	ps := make([]posting, 0, n)
	for i := range entries {
		e := &entries[i]
		add, err := b.putRow(e)
		if err != nil {
			return err
		}
		if !add {
			continue
		}
		for ix, prefixes := range e.idx {
			for _, p := range prefixes {
				ps = append(ps, posting{ix: ix, p: binary.BigEndian.Uint64(p), pfx: p, pos: e.pos})
			}
		}
	}
	slices.SortFunc(ps, func(x, y posting) int {
		if c := cmp.Compare(x.ix, y.ix); c != 0 {
			return c
		}
		if c := cmp.Compare(x.p, y.p); c != 0 {
			return c
		}
		return bytes.Compare(x.pos, y.pos)
	})
	run := make([][]byte, 0, 64)
	for i := 0; i < len(ps); {
		j := i
		run = run[:0]
		for ; j < len(ps) && ps[j].ix == ps[i].ix && ps[j].p == ps[i].p; j++ {
			if len(run) == 0 || !bytes.Equal(run[len(run)-1], ps[j].pos) {
				run = append(run, ps[j].pos)
			}
		}
		ix := ps[i].ix
		if err := addPostings(b.idx[ix], b.cursor(ix), ps[i].pfx, run); err != nil {
			return err
		}
		i = j
	}
	return nil
}

// posting is an index entry to add: index ix, prefix pfx (p, as a
// number: the prefixes sort as their 8 big-endian bytes do), position pos.
type posting struct {
	ix       int
	p        uint64
	pfx, pos []byte
}

// putRow writes e's row over the row it replaces (same key), if any; add
// is true when e's index entries are still to be added. The row it
// replaces has its index entries removed first, unless they are e's
// own (the proxy's final row has those of its provisional one: same
// position, same ids): then they stay, and only the row is written.
func (b *auditBuckets) putRow(e *auditEntry) (add bool, err error) {
	if old := b.rows.Get(e.key); old != nil {
		var r Row
		if err := decodeAuditRow(old, e.key, &r); err != nil {
			return false, err
		}
		if sameIndexEntries(&r, e) {
			return false, b.rows.Put(e.key, e.bval)
		}
		if err := b.delete(e.key, &r); err != nil {
			return false, err
		}
	}
	return true, b.rows.Put(e.key, e.bval)
}

// sameIndexEntries says row r, stored at e's key, has e's index entries:
// the same prefixes in each index (in the same order).
func sameIndexEntries(r *Row, e *auditEntry) bool {
	var arr [8]string
	var buf [auditIndexPrefixLen]byte
	for i := range auditIndexes {
		vals := r.indexValues(i, arr[:0])
		if len(vals) != len(e.idx[i]) {
			return false
		}
		for j, v := range vals {
			if string(appendAuditIndexPrefix(buf[:0], r.TenantID, v)) != string(e.idx[i][j]) {
				return false
			}
		}
	}
	return true
}

// delete removes row r (stored at k, of either layout) and its index
// entries.
func (b *auditBuckets) delete(k []byte, r *Row) error {
	tb := auditTime(r.Time)
	legacy := isLegacyRowKey(k)
	pos := auditPos(tb, r.ID)
	for i, ix := range auditIndexes {
		for _, v := range ix.values(r, nil) {
			var err error
			if legacy {
				err = b.idx[i].Delete(legacyAuditKey(r.TenantID+"\x00"+v, tb, r.ID))
			} else {
				err = removePosting(b.idx[i], b.cursor(i), auditIndexPrefix(r.TenantID, v), pos)
			}
			if err != nil {
				return err
			}
		}
	}
	return b.rows.Delete(k)
}
