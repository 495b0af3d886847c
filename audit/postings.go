package audit

import (
	"bytes"
	"encoding/binary"

	"github.com/egressd/egressd/vault/storage"
)

// An index bucket holds its entries in chunks: the rows of one (tenant,
// value) whose positions (time id, auditPos) follow each other, up to
// auditChunkRows a chunk, under the key auditIndexPrefix(tenant, value)
// and the chunk's first position; the value is the positions, ascending,
// one after the other (a position ends where its id part does). A key a
// row, with its 16 bytes of bbolt's element header, cost 41 bytes an
// entry and filled pages to 55-69%; a position in a chunk costs its 17
// bytes. Chunks of one prefix hold disjoint ranges: a position belongs
// to the last chunk whose key is at or below it.

// auditChunkRows is the most positions a chunk holds.
const auditChunkRows = 64

// splitPositions cuts a chunk's value into its positions; ok false for a
// value that is not a sequence of them.
func splitPositions(v []byte, out [][]byte) ([][]byte, bool) {
	for len(v) > 0 {
		n, ok := posLen(v)
		if !ok {
			return out, false
		}
		out = append(out, v[:n])
		v = v[n:]
	}
	return out, true
}

// posLen is the length of the position that v starts with (the time,
// then the id part as appendAuditID writes it), read without building
// the id.
func posLen(v []byte) (int, bool) {
	if len(v) < auditTimeLen+1 {
		return 0, false
	}
	switch v[auditTimeLen] {
	case 1:
		return auditTimeLen + 9, len(v) >= auditTimeLen+9
	case 2:
		return auditTimeLen + 17, len(v) >= auditTimeLen+17
	case 3:
		n, k := binary.Uvarint(v[auditTimeLen+1:])
		if k <= 0 || n == 0 || n > maxAuditIDLen || uint64(len(v)-auditTimeLen-1-k) < n {
			return 0, false
		}
		return auditTimeLen + 1 + k + int(n), true
	}
	return 0, false
}

// lastPosition is where the last position of a chunk's value starts,
// and how many it holds; ok false for a value that is not positions.
func lastPosition(v []byte) (at, count int, ok bool) {
	for off := 0; off < len(v); count++ {
		n, ok := posLen(v[off:])
		if !ok {
			return 0, 0, false
		}
		at, off = off, off+n
	}
	return at, count, count > 0
}

// chunkOf finds the chunk of prefix p that pos belongs to (the last at
// or below it); k is nil when p has no chunk at or below pos.
func chunkOf(c storage.Cursor, p, pos []byte) (k, v []byte) {
	var buf [64]byte
	seek := append(append(buf[:0], p...), pos...)
	k, v = c.Seek(seek)
	if k != nil && bytes.Equal(k, seek) {
		return k, v
	}
	if k == nil {
		k, v = c.Last()
	} else {
		k, v = c.Prev()
	}
	if k == nil || !bytes.HasPrefix(k, p) || len(k) == len(p) {
		return nil, nil
	}
	return k, v
}

// joinPositions is the value of a chunk of positions.
func joinPositions(ps [][]byte) []byte {
	n := 0
	for _, p := range ps {
		n += len(p)
	}
	out := make([]byte, 0, n)
	for _, p := range ps {
		out = append(out, p...)
	}
	return out
}

func chunkKey(p, first []byte) []byte {
	return append(append(make([]byte, 0, len(p)+len(first)), p...), first...)
}

// addPosting adds pos to prefix p's entries in index bucket b; c is a
// cursor of b (repositioned here: one cursor serves a transaction's
// writes, its search stack kept).
func addPosting(b storage.Bucket, c storage.Cursor, p, pos []byte) error {
	k, v := chunkOf(c, p, pos)
	if k == nil {
		// Before every chunk of p: into the first one, if any, which
		// then starts at pos; or a chunk of its own.
		nk, nv := c.Seek(append(bytes.Clone(p), pos...))
		if nk == nil || !bytes.HasPrefix(nk, p) || len(nk) == len(p) || len(nv) == 0 {
			return b.Put(chunkKey(p, pos), bytes.Clone(pos))
		}
		ps, ok := splitPositions(nv, nil)
		if !ok {
			return errAuditBin
		}
		if len(ps) >= auditChunkRows {
			return b.Put(chunkKey(p, pos), bytes.Clone(pos))
		}
		old := bytes.Clone(nk)
		val := joinPositions(append([][]byte{pos}, ps...))
		if err := b.Delete(old); err != nil {
			return err
		}
		return b.Put(chunkKey(p, pos), val)
	}
	at, count, ok := lastPosition(v)
	if !ok {
		return errAuditBin
	}
	if bytes.Compare(v[at:], pos) < 0 {
		// After the chunk's last, as rows arrive: appended, or a chunk
		// of its own once this one is full.
		if count >= auditChunkRows {
			return b.Put(chunkKey(p, pos), bytes.Clone(pos))
		}
		// k is the stored key, unchanged until the transaction ends
		// (the seam asks no more of a Put's key).
		val := make([]byte, 0, len(v)+len(pos))
		return b.Put(k, append(append(val, v...), pos...))
	}
	ps, ok := splitPositions(v, make([][]byte, 0, auditChunkRows+1))
	if !ok {
		return errAuditBin
	}
	// Where pos goes: mostly at the end (rows arrive in time order).
	i := len(ps)
	for i > 0 && bytes.Compare(ps[i-1], pos) > 0 {
		i--
	}
	if i > 0 && bytes.Equal(ps[i-1], pos) {
		return nil // there already
	}
	key := bytes.Clone(k)
	if len(ps) < auditChunkRows {
		ps = append(ps[:i], append([][]byte{pos}, ps[i:]...)...)
		return b.Put(key, joinPositions(ps))
	}
	if i == len(ps) {
		// A full chunk and pos after it: a new chunk.
		return b.Put(chunkKey(p, pos), bytes.Clone(pos))
	}
	// Into the middle of a full chunk: split it in two.
	ps = append(ps[:i], append([][]byte{pos}, ps[i:]...)...)
	half := len(ps) / 2
	if err := b.Put(key, joinPositions(ps[:half])); err != nil {
		return err
	}
	return b.Put(chunkKey(p, ps[half]), joinPositions(ps[half:]))
}

// addPostings adds ps, ascending and distinct, to prefix p's entries in
// index bucket b, as addPosting of each in turn would (the same chunks),
// with one Put a chunk for the positions that go after a chunk's last,
// as rows arrive; others go one by one through addPosting.
func addPostings(b storage.Bucket, c storage.Cursor, p []byte, ps [][]byte) error {
	for len(ps) > 0 {
		k, v := chunkOf(c, p, ps[0])
		if k == nil {
			if err := addPosting(b, c, p, ps[0]); err != nil {
				return err
			}
			ps = ps[1:]
			continue
		}
		at, count, ok := lastPosition(v)
		if !ok {
			return errAuditBin
		}
		if bytes.Compare(v[at:], ps[0]) >= 0 {
			if err := addPosting(b, c, p, ps[0]); err != nil {
				return err
			}
			ps = ps[1:]
			continue
		}
		// ps[0] and those after it below the next chunk's first position
		// (the cursor is at k) go after this chunk's last: into it while
		// it has room, then into chunks of their own.
		n := 1
		if nk, _ := c.Next(); nk != nil && bytes.HasPrefix(nk, p) && len(nk) > len(p) {
			for n < len(ps) && bytes.Compare(ps[n], nk[len(p):]) < 0 {
				n++
			}
		} else {
			n = len(ps)
		}
		run := ps[:n]
		ps = ps[n:]
		if room := auditChunkRows - count; room > 0 {
			fill := run[:min(room, len(run))]
			size := len(v)
			for _, pos := range fill {
				size += len(pos)
			}
			val := append(make([]byte, 0, size), v...)
			for _, pos := range fill {
				val = append(val, pos...)
			}
			// k is the stored key, unchanged until the transaction ends
			// (the seam asks no more of a Put's key).
			if err := b.Put(k, val); err != nil {
				return err
			}
			run = run[len(fill):]
		}
		for len(run) > 0 {
			chunk := run[:min(auditChunkRows, len(run))]
			if err := b.Put(chunkKey(p, chunk[0]), joinPositions(chunk)); err != nil {
				return err
			}
			run = run[len(chunk):]
		}
	}
	return nil
}

// removePosting removes pos from prefix p's entries in index bucket b;
// one that is not there is no error.
func removePosting(b storage.Bucket, c storage.Cursor, p, pos []byte) error {
	k, v := chunkOf(c, p, pos)
	if k == nil {
		return nil
	}
	ps, ok := splitPositions(v, nil)
	if !ok {
		return errAuditBin
	}
	i := 0
	for i < len(ps) && !bytes.Equal(ps[i], pos) {
		i++
	}
	if i == len(ps) {
		return nil
	}
	key := bytes.Clone(k)
	ps = append(ps[:i], ps[i+1:]...)
	if i == 0 || len(ps) == 0 {
		// The chunk's key is its first position: it moves, or goes.
		if err := b.Delete(key); err != nil {
			return err
		}
		if len(ps) == 0 {
			return nil
		}
		key = chunkKey(p, ps[0])
	}
	return b.Put(key, joinPositions(ps))
}

// postingIter walks prefix p's positions in an index bucket, newest
// first, from below upper (nil: from the newest).
type postingIter struct {
	c   storage.Cursor
	p   []byte
	ps  [][]byte
	err error
}

func newPostingIter(b storage.Bucket, p, upper []byte) *postingIter {
	it := &postingIter{c: b.Cursor(), p: p, ps: make([][]byte, 0, auditChunkRows)}
	var k, v []byte
	if upper == nil {
		k, v = seekBefore(it.c, prefixEnd(p))
	} else {
		k, v = seekBefore(it.c, append(bytes.Clone(p), upper...))
	}
	it.load(k, v)
	if upper != nil {
		for len(it.ps) > 0 && bytes.Compare(it.ps[len(it.ps)-1], upper) >= 0 {
			it.ps = it.ps[:len(it.ps)-1]
		}
	}
	return it
}

func (it *postingIter) load(k, v []byte) {
	it.ps = it.ps[:0]
	if k == nil || !bytes.HasPrefix(k, it.p) || len(k) == len(it.p) {
		it.c = nil
		return
	}
	var ok bool
	if it.ps, ok = splitPositions(v, it.ps); !ok {
		it.err, it.c = errAuditBin, nil
	}
}

// next is the next position, nil after the last.
func (it *postingIter) next() []byte {
	for len(it.ps) == 0 {
		if it.c == nil {
			return nil
		}
		it.load(it.c.Prev())
	}
	pos := it.ps[len(it.ps)-1]
	it.ps = it.ps[:len(it.ps)-1]
	return pos
}

// forEachPosting calls fn with every (prefix, position) of an index
// bucket, for tests and checks.
func forEachPosting(b storage.Bucket, fn func(p, pos []byte)) error {
	return b.ForEach(func(k, v []byte) error {
		if len(k) < auditIndexPrefixLen {
			return errAuditBin
		}
		ps, ok := splitPositions(v, nil)
		if !ok {
			return errAuditBin
		}
		for _, pos := range ps {
			fn(k[:auditIndexPrefixLen], pos)
		}
		return nil
	})
}
