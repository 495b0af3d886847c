package pgstore

import "github.com/jackc/pgx/v5"

// A cursor holds a window of the bucket: rows read by one keyset query, in
// ascending order, with no key of the bucket between two neighbours. Next
// and Prev move inside it; past its edge they read the next page (key >
// the last, ORDER BY key; or key < the first, ORDER BY key DESC). The
// first read of a cursor takes firstPage rows (most of the vault's walks
// are short prefix scans), later ones Options.PageSize.
//
// The window is read inside the transaction, so it holds the
// transaction's writes up to then. A write to the bucket after it was
// read makes it stale: the next move reads anew from the key the cursor is
// on. (The seam asks for less, a reposition after a write, as bbolt does.)

const firstPage = 32

// pageBytes ends a page early when its keys and values pass it, so that a
// page of large values stays small in memory.
const pageBytes = 4 << 20

type row struct{ k, v []byte }

type cursor struct {
	b      *bucket
	rows   []row
	i      int    // the position in rows: -1 before them, len(rows) after them
	lo, hi bool   // rows begin at the bucket's first key / end at its last
	below  []byte // with rows empty: the position is just before this key
	gen    uint64 // b.gen when rows were read
	reads  int
}

func (c *cursor) at() ([]byte, []byte) {
	if c.i < 0 || c.i >= len(c.rows) {
		return nil, nil
	}
	r := c.rows[c.i]
	return r.k, r.v
}

func (c *cursor) limit() int {
	c.reads++
	if n := c.b.t.s.opts.PageSize; c.reads > 1 || n < firstPage {
		return n
	}
	return firstPage
}

// read runs one page query; desc pages come back ascending. full reports
// whether the page came back full (there may be more beyond it).
func (c *cursor) read(sql string, desc bool, key []byte) (rows []row, full bool) {
	t := c.b.t
	c.gen = c.b.gen
	if t.err != nil {
		return nil, false
	}
	n := c.limit()
	var args []any
	if key == nil {
		args = []any{c.b.name, n}
	} else {
		args = []any{c.b.name, key, n}
	}
	rs, err := t.ptx.Query(t.ctx, sql, args...)
	if err != nil {
		t.fail("read page", err)
		return nil, false
	}
	defer rs.Close()
	// One buffer holds the page's keys and values; the rows point into it.
	var buf []byte
	var ends []int
	cut := false
	for rs.Next() {
		if len(buf) >= pageBytes {
			cut = true // the rest is read anew from the last key kept
			break
		}
		// bytea's binary format is its bytes; a text result (the simple
		// protocol, chosen in the DSN) is hex and needs pgx to decode it.
		if fd := rs.FieldDescriptions(); fd[0].Format == pgx.BinaryFormatCode && fd[1].Format == pgx.BinaryFormatCode {
			raw := rs.RawValues()
			buf = append(buf, raw[0]...)
			ends = append(ends, len(buf))
			buf = append(buf, raw[1]...)
			ends = append(ends, len(buf))
			continue
		}
		var k, v []byte
		if err := rs.Scan(&k, &v); err != nil {
			t.fail("read page", err)
			return nil, false
		}
		buf = append(buf, k...)
		ends = append(ends, len(buf))
		buf = append(buf, v...)
		ends = append(ends, len(buf))
	}
	rs.Close()
	if err := rs.Err(); err != nil {
		t.fail("read page", err)
		return nil, false
	}
	buf = buf[:len(buf):len(buf)]
	rows = make([]row, len(ends)/2)
	start := 0
	for i := range rows {
		ke, ve := ends[2*i], ends[2*i+1]
		rows[i] = row{buf[start:ke:ke], buf[ke:ve:ve]}
		start = ve
	}
	if desc {
		for i, j := 0, len(rows)-1; i < j; i, j = i+1, j-1 {
			rows[i], rows[j] = rows[j], rows[i]
		}
	}
	return rows, cut || len(rows) == n
}

func (c *cursor) First() ([]byte, []byte) {
	rows, full := c.read(c.b.t.s.q.first, false, nil)
	c.rows, c.i, c.lo, c.hi, c.below = rows, 0, true, !full, nil
	return c.at()
}

func (c *cursor) Last() ([]byte, []byte) {
	rows, full := c.read(c.b.t.s.q.last, true, nil)
	c.rows, c.i, c.lo, c.hi, c.below = rows, len(rows)-1, !full, true, nil
	return c.at()
}

func (c *cursor) Seek(seek []byte) ([]byte, []byte) {
	if seek == nil {
		seek = []byte{}
	}
	rows, full := c.read(c.b.t.s.q.ge, false, seek)
	c.rows, c.i, c.lo, c.hi, c.below = rows, 0, len(seek) == 0, !full, append([]byte(nil), seek...)
	return c.at()
}

func (c *cursor) Next() ([]byte, []byte) {
	if c.gen != c.b.gen {
		return c.after()
	}
	if c.i < len(c.rows) {
		c.i++
	}
	if c.i < len(c.rows) {
		return c.at()
	}
	if c.hi || len(c.rows) == 0 {
		c.hi = true
		return nil, nil
	}
	rows, full := c.read(c.b.t.s.q.gt, false, c.rows[len(c.rows)-1].k)
	if len(rows) == 0 {
		c.hi = true
		return nil, nil
	}
	c.rows, c.i, c.lo, c.hi = rows, 0, false, !full
	return c.at()
}

func (c *cursor) Prev() ([]byte, []byte) {
	if c.gen != c.b.gen {
		return c.before()
	}
	if c.i >= 0 {
		c.i--
	}
	if c.i >= 0 {
		return c.at()
	}
	anchor := c.below
	if len(c.rows) > 0 {
		anchor = c.rows[0].k
	}
	if c.lo || len(anchor) == 0 {
		c.lo = true
		return nil, nil
	}
	rows, full := c.read(c.b.t.s.q.lt, true, anchor)
	if len(rows) == 0 {
		c.lo = true
		return nil, nil
	}
	c.rows, c.i, c.lo, c.hi = rows, len(rows)-1, !full, false
	return c.at()
}

// after is Next on a stale window: the first key after the position,
// read anew.
func (c *cursor) after() ([]byte, []byte) {
	var from []byte
	switch {
	case c.i >= 0 && c.i < len(c.rows):
		from = c.rows[c.i].k
	case c.i < 0:
		return c.First() // before the first key
	case len(c.rows) > 0:
		from = c.rows[len(c.rows)-1].k
	default:
		k, v := c.Seek(c.below)
		return k, v
	}
	rows, full := c.read(c.b.t.s.q.gt, false, from)
	// With no row after, the position is just after from.
	c.rows, c.i, c.lo, c.hi, c.below = rows, 0, false, !full, append(append([]byte(nil), from...), 0)
	return c.at()
}

// before is Prev on a stale window: the last key before the position,
// read anew.
func (c *cursor) before() ([]byte, []byte) {
	var to []byte
	switch {
	case c.i >= 0 && c.i < len(c.rows):
		to = c.rows[c.i].k
	case c.i >= len(c.rows) && c.hi:
		return c.Last() // after the last key
	case len(c.rows) > 0:
		to = c.rows[0].k
	default:
		to = c.below
	}
	if len(to) == 0 {
		c.rows, c.i, c.lo, c.hi, c.below = nil, -1, true, false, nil
		c.gen = c.b.gen
		return nil, nil
	}
	rows, full := c.read(c.b.t.s.q.lt, true, to)
	c.rows, c.i, c.lo, c.hi, c.below = rows, len(rows)-1, !full, false, append([]byte(nil), to...)
	return c.at()
}
