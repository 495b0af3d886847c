package storagetest

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/egressd/egressd/vault/storage"
)

// model is a bucket as a sorted slice, what a backend's answers are
// checked against.
type model struct{ ps []pair }

func (m *model) find(k []byte) (int, bool) {
	return slices.BinarySearchFunc(m.ps, k, func(p pair, k []byte) int { return bytes.Compare(p.k, k) })
}

func (m *model) put(k, v []byte) {
	i, ok := m.find(k)
	if ok {
		m.ps[i].v = v
		return
	}
	m.ps = slices.Insert(m.ps, i, pair{k, v})
}

func (m *model) del(k []byte) {
	if i, ok := m.find(k); ok {
		m.ps = slices.Delete(m.ps, i, i+1)
	}
}

// modelKey draws a key from a small alphabet of awkward bytes, so that
// keys share prefixes and collide often.
func modelKey(rng *rand.Rand) []byte {
	const alphabet = "\x00\x01a\x7f\x80\xfe\xff"
	k := make([]byte, 1+rng.IntN(4))
	for i := range k {
		k[i] = alphabet[rng.IntN(len(alphabet))]
	}
	return k
}

// testCursorModel runs random cursor moves, Gets, Puts and Deletes in one
// Update over a bucket of some 700 keys and checks every answer against a
// model; after a write to the walked bucket the next move repositions (as
// the vault does), writes to another bucket come at any time. Then the
// committed bucket must equal the model.
func testCursorModel(t *testing.T, s storage.Backend) {
	ensure(t, s)
	rng := rand.New(rand.NewPCG(5, 6))
	m := &model{}
	update(t, s, func(tx storage.Tx) error {
		for range 1500 {
			k := modelKey(rng)
			v := fmt.Appendf(nil, "init %x", k)
			if err := tx.Bucket(bA).Put(k, v); err != nil {
				return err
			}
			m.put(k, v)
		}
		return nil
	})
	t.Logf("%d keys in the bucket", len(m.ps))
	var failed bool
	update(t, s, func(tx storage.Tx) error {
		b, other := tx.Bucket(bA), tx.Bucket(bB)
		c := b.Cursor()
		pos := -1           // index in m.ps of the cursor's key
		positioned := false // false: the next move must be First, Last or Seek
		var trail []string  // the last ops, for a failure's message
		check := func(op string, k, v []byte, i int) {
			trail = append(trail, op)
			if len(trail) > 12 {
				trail = trail[1:]
			}
			if failed {
				return
			}
			var wk, wv []byte
			if i >= 0 && i < len(m.ps) {
				wk, wv = m.ps[i].k, m.ps[i].v
			}
			if !bytes.Equal(k, wk) || !bytes.Equal(v, wv) || (k == nil) != (wk == nil) {
				failed = true
				t.Errorf("after %q:\n got %s=%s\nwant %s=%s", trail, fmtKey(k), fmtKey(v), fmtKey(wk), fmtKey(wv))
			}
		}
		move := func(op string, k, v []byte, i int) {
			check(op, k, v, i)
			pos, positioned = i, i >= 0 && i < len(m.ps)
		}
		for step := 0; step < 4000 && !failed; step++ {
			r := rng.IntN(100)
			if !positioned && r < 50 {
				r = 90 + rng.IntN(10) // a reposition
			}
			switch {
			case r < 25:
				k, v := c.Next()
				move("Next", k, v, pos+1)
			case r < 45:
				k, v := c.Prev()
				move("Prev", k, v, pos-1)
			case r < 55:
				k := modelKey(rng)
				got, want := b.Get(k), getModel(m, k)
				trail = append(trail, fmt.Sprintf("Get %x", k))
				if !bytes.Equal(got, want) || (got == nil) != (want == nil) {
					failed = true
					t.Errorf("after %q: Get = %s, want %s", trail, fmtKey(got), fmtKey(want))
				}
			case r < 65:
				k, v := modelKey(rng), fmt.Appendf(nil, "step %d", step)
				if err := b.Put(k, v); err != nil {
					return err
				}
				m.put(k, v)
				trail = append(trail, fmt.Sprintf("Put %x", k))
				positioned = false
			case r < 72:
				k := modelKey(rng)
				if len(m.ps) > 0 && rng.IntN(2) == 0 {
					k = bytes.Clone(m.ps[rng.IntN(len(m.ps))].k) // one that is there
				}
				if err := b.Delete(k); err != nil {
					return err
				}
				m.del(k)
				trail = append(trail, fmt.Sprintf("Delete %x", k))
				positioned = false
			case r < 78:
				// Writes elsewhere do not disturb the walk.
				if err := other.Put(modelKey(rng), []byte("x")); err != nil {
					return err
				}
			case r < 82:
				c = b.Cursor()
				positioned = false
			case r < 86:
				k, v := c.First()
				move("First", k, v, 0)
			case r < 90:
				k, v := c.Last()
				move("Last", k, v, len(m.ps)-1)
			default:
				seek := modelKey(rng)
				if rng.IntN(3) == 0 && positioned {
					seek = bytes.Clone(m.ps[pos].k) // reposition where it was
				}
				i, _ := m.find(seek)
				k, v := c.Seek(seek)
				move(fmt.Sprintf("Seek %x", seek), k, v, i)
			}
		}
		return nil
	})
	if failed {
		return
	}
	wantPairs(t, "committed bucket", contents(t, s, bA), m.ps)
}

func getModel(m *model, k []byte) []byte {
	if i, ok := m.find(k); ok {
		return m.ps[i].v
	}
	return nil
}
