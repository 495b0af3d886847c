package storagetest

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/egressd/egressd/vault/storage"
)

// orderKeys hold the bytes and prefixes where an ordering that is not
// bytewise and unsigned (a collation, signed bytes, length first, a NUL
// that ends a string) goes wrong.
var orderKeys = [][]byte{
	{0x00}, {0x00, 0x00}, {0x00, 0x01}, {0x00, 0xff}, {0x01},
	[]byte("A"), []byte("Z"), []byte("a"), []byte("a\x00"), []byte("a\x00b"),
	[]byte("a\x01"), []byte("a\x7f"), []byte("a\x80"), []byte("a\xff"),
	[]byte("aa"), []byte("ab"), []byte("b"), []byte("é"), {0x7f},
	{0x80}, {0x80, 0x00}, {0xc3, 0xa9, 0x00}, {0xfe}, {0xff},
	{0xff, 0x00}, {0xff, 0xfe}, {0xff, 0xff}, {0xff, 0xff, 0xff},
}

func sortedKeys(keys [][]byte) [][]byte {
	out := slices.Clone(keys)
	slices.SortFunc(out, bytes.Compare)
	return out
}

func testKeyOrder(t *testing.T, s storage.Backend) {
	ensure(t, s)
	want := sortedKeys(orderKeys)
	shuffled := slices.Clone(orderKeys)
	rand.New(rand.NewPCG(3, 4)).Shuffle(len(shuffled), func(i, j int) {
		shuffled[i], shuffled[j] = shuffled[j], shuffled[i]
	})
	// Half committed before, half put in the transaction that walks.
	half := len(shuffled) / 2
	update(t, s, func(tx storage.Tx) error {
		for _, k := range shuffled[:half] {
			if err := tx.Bucket(bA).Put(k, k); err != nil {
				return err
			}
		}
		return nil
	})
	check := func(b storage.Bucket, when string) {
		var fwd, back, each [][]byte
		c := b.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if !bytes.Equal(k, v) {
				t.Errorf("%s: %s has value %s", when, fmtKey(k), fmtKey(v))
			}
			fwd = append(fwd, bytes.Clone(k))
		}
		for k, _ := c.Last(); k != nil; k, _ = c.Prev() {
			back = append(back, bytes.Clone(k))
		}
		slices.Reverse(back)
		if err := b.ForEach(func(k, _ []byte) error {
			each = append(each, bytes.Clone(k))
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		for _, got := range []struct {
			how  string
			keys [][]byte
		}{{"First/Next", fwd}, {"Last/Prev (reversed)", back}, {"ForEach", each}} {
			if !slices.EqualFunc(got.keys, want, bytes.Equal) {
				t.Errorf("%s: %s order:\n got %s\nwant %s", when, got.how, fmtKeys(got.keys), fmtKeys(want))
			}
		}
	}
	update(t, s, func(tx storage.Tx) error {
		for _, k := range shuffled[half:] {
			if err := tx.Bucket(bA).Put(k, k); err != nil {
				return err
			}
		}
		check(tx.Bucket(bA), "in the writing transaction")
		return nil
	})
	view(t, s, func(tx storage.Tx) error {
		check(tx.Bucket(bA), "after commit")
		return nil
	})
}

func fmtKeys(keys [][]byte) string {
	ps := make([]pair, len(keys))
	for i, k := range keys {
		ps[i] = pair{k: k, v: []byte{}}
	}
	return fmtPairs(ps)
}

func testCursorEmpty(t *testing.T, s storage.Backend) {
	ensure(t, s)
	check := func(b storage.Bucket, when string) {
		c := b.Cursor()
		if k, v := c.First(); k != nil || v != nil {
			t.Errorf("%s: First = %s, %s", when, fmtKey(k), fmtKey(v))
		}
		if k, v := c.Last(); k != nil || v != nil {
			t.Errorf("%s: Last = %s, %s", when, fmtKey(k), fmtKey(v))
		}
		if k, v := c.Seek([]byte("k")); k != nil || v != nil {
			t.Errorf("%s: Seek = %s, %s", when, fmtKey(k), fmtKey(v))
		}
		if k, v := c.Seek(nil); k != nil || v != nil {
			t.Errorf("%s: Seek(nil) = %s, %s", when, fmtKey(k), fmtKey(v))
		}
		if err := b.ForEach(func(k, _ []byte) error {
			t.Errorf("%s: ForEach called with %s", when, fmtKey(k))
			return nil
		}); err != nil {
			t.Errorf("%s: ForEach: %v", when, err)
		}
	}
	view(t, s, func(tx storage.Tx) error {
		check(tx.Bucket(bA), "new bucket")
		return nil
	})
	putAll(t, s, bB, []byte("k"), []byte("other bucket"))
	putAll(t, s, bA, []byte("k"), []byte("v"))
	update(t, s, func(tx storage.Tx) error {
		if err := tx.Bucket(bA).Delete([]byte("k")); err != nil {
			return err
		}
		check(tx.Bucket(bA), "emptied in this transaction")
		return nil
	})
	view(t, s, func(tx storage.Tx) error {
		check(tx.Bucket(bA), "emptied")
		return nil
	})
}

func testCursorSeek(t *testing.T, s storage.Backend) {
	ensure(t, s)
	keys := []string{"ab", "abc", "abd", "b", "d", "f", "f\xff"}
	var kvs [][]byte
	for _, k := range keys {
		kvs = append(kvs, []byte(k), []byte("v:"+k))
	}
	putAll(t, s, bA, kvs...)
	cases := []struct {
		seek       string
		want, next string // "" for nil
		prev       string
	}{
		{"", "ab", "abc", ""},
		{"\x00", "ab", "abc", ""},
		{"a", "ab", "abc", ""},
		{"ab", "ab", "abc", ""},
		{"ab\x00", "abc", "abd", "ab"},
		{"abc", "abc", "abd", "ab"},
		{"abcd", "abd", "b", "abc"},
		{"abd\xff", "b", "d", "abd"},
		{"c", "d", "f", "b"},
		{"d", "d", "f", "b"},
		{"f", "f", "f\xff", "d"},
		{"f\x00", "f\xff", "", "f"},
		{"f\xff", "f\xff", "", "f"},
		{"f\xff\x00", "", "", ""},
		{"g", "", "", ""},
		{"\xff", "", "", ""},
	}
	view(t, s, func(tx storage.Tx) error {
		b := tx.Bucket(bA)
		for _, tc := range cases {
			c := b.Cursor()
			k, v := c.Seek([]byte(tc.seek))
			if string(k) != tc.want || (k == nil) != (tc.want == "") {
				t.Errorf("Seek(%q) = %s, want %q", tc.seek, fmtKey(k), tc.want)
				continue
			}
			if k == nil {
				continue
			}
			if string(v) != "v:"+tc.want {
				t.Errorf("Seek(%q) value %s", tc.seek, fmtKey(v))
			}
			if k, _ := c.Next(); string(k) != tc.next || (k == nil) != (tc.next == "") {
				t.Errorf("Seek(%q), Next = %s, want %q", tc.seek, fmtKey(k), tc.next)
			}
			c.Seek([]byte(tc.seek))
			if k, _ := c.Prev(); string(k) != tc.prev || (k == nil) != (tc.prev == "") {
				t.Errorf("Seek(%q), Prev = %s, want %q", tc.seek, fmtKey(k), tc.prev)
			}
		}
		// Seek(nil) is Seek of the empty key.
		if k, _ := b.Cursor().Seek(nil); string(k) != "ab" {
			t.Errorf("Seek(nil) = %s, want ab", fmtKey(k))
		}
		return nil
	})
}

// seekBefore is the vault's move to the last key below k.
func seekBefore(c storage.Cursor, k []byte) ([]byte, []byte) {
	if at, _ := c.Seek(k); at == nil {
		return c.Last()
	}
	return c.Prev()
}

func testCursorSeekBefore(t *testing.T, s storage.Backend) {
	ensure(t, s)
	putAll(t, s, bA, []byte("t1\x00a"), []byte("1"), []byte("t1\x00b"), []byte("2"),
		[]byte("t2\x00a"), []byte("3"), []byte("t2\x00c"), []byte("4"))
	cases := []struct{ k, want string }{
		{"t0", ""},
		{"t1\x00a", ""},
		{"t1\x00b", "t1\x00a"},
		{"t1\x01", "t1\x00b"}, // the end of tenant t1's prefix
		{"t2\x00b", "t2\x00a"},
		{"t2\x01", "t2\x00c"}, // past the last key: Last
		{"u", "t2\x00c"},
	}
	view(t, s, func(tx storage.Tx) error {
		for _, tc := range cases {
			k, _ := seekBefore(tx.Bucket(bA).Cursor(), []byte(tc.k))
			if string(k) != tc.want || (k == nil) != (tc.want == "") {
				t.Errorf("seekBefore(%q) = %s, want %q", tc.k, fmtKey(k), tc.want)
			}
		}
		// Then walking back over tenant t1, as the audit query does.
		c := tx.Bucket(bA).Cursor()
		var got []string
		p := []byte("t1\x00")
		for k, _ := seekBefore(c, []byte("t1\x01")); k != nil && bytes.HasPrefix(k, p); k, _ = c.Prev() {
			got = append(got, string(k))
		}
		if want := []string{"t1\x00b", "t1\x00a"}; !slices.Equal(got, want) {
			t.Errorf("walk back over t1 = %q, want %q", got, want)
		}
		return nil
	})
}

// pageKey is key i of n keys in order, with a shared prefix.
func pageKey(i int) []byte { return fmt.Appendf(nil, "page\x00%05d", i) }

// testCursorPages walks 1000 keys, more than one page of any paging
// backend, both ways and zigzag across page boundaries.
func testCursorPages(t *testing.T, s storage.Backend) {
	const n = 1000
	ensure(t, s)
	update(t, s, func(tx storage.Tx) error {
		for i := range n {
			if err := tx.Bucket(bA).Put(pageKey(i), fmt.Appendf(nil, "v%d", i)); err != nil {
				return err
			}
		}
		return nil
	})
	at := func(k, v []byte, i int, what string) bool {
		t.Helper()
		if i < 0 || i >= n {
			if k != nil {
				t.Errorf("%s: got %s, want the end", what, fmtKey(k))
				return false
			}
			return true
		}
		if !bytes.Equal(k, pageKey(i)) || string(v) != fmt.Sprintf("v%d", i) {
			t.Errorf("%s: got %s=%s, want key %d", what, fmtKey(k), fmtKey(v), i)
			return false
		}
		return true
	}
	view(t, s, func(tx storage.Tx) error {
		c := tx.Bucket(bA).Cursor()
		i := 0
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if !at(k, v, i, "forward") {
				return nil
			}
			i++
		}
		if i != n {
			t.Errorf("forward walk saw %d keys, want %d", i, n)
		}
		i = n - 1
		for k, v := c.Last(); k != nil; k, v = c.Prev() {
			if !at(k, v, i, "backward") {
				return nil
			}
			i--
		}
		if i != -1 {
			t.Errorf("backward walk stopped at %d", i)
		}
		// Zigzag: two forward, one back, from the middle to the end.
		k, v := c.Seek(pageKey(500))
		i = 500
		at(k, v, i, "Seek(500)")
		for step := 0; i < n-1; step++ {
			if step%3 == 2 {
				k, v = c.Prev()
				i--
			} else {
				k, v = c.Next()
				i++
			}
			if !at(k, v, i, fmt.Sprintf("zigzag step %d", step)) {
				return nil
			}
		}
		// Back 700 across pages from a Seek, then forward 700.
		k, v = c.Seek(pageKey(900))
		at(k, v, 900, "Seek(900)")
		for i = 899; i >= 200; i-- {
			k, v = c.Prev()
			if !at(k, v, i, "back from 900") {
				return nil
			}
		}
		for i = 201; i <= 900; i++ {
			k, v = c.Next()
			if !at(k, v, i, "forward again") {
				return nil
			}
		}
		return nil
	})
}

func testForEach(t *testing.T, s storage.Backend) {
	ensure(t, s)
	putAll(t, s, bA, []byte("a"), []byte("1"), []byte("b"), []byte("2"), []byte("c"), []byte("3"))
	for _, fn := range []func(func(storage.Tx) error) error{s.View, s.Update} {
		if err := fn(func(tx storage.Tx) error {
			var got []pair
			if err := tx.Bucket(bA).ForEach(func(k, v []byte) error {
				got = append(got, pair{bytes.Clone(k), bytes.Clone(v)})
				return nil
			}); err != nil {
				return err
			}
			wantPairs(t, "ForEach", got, []pair{kv("a", "1"), kv("b", "2"), kv("c", "3")})
			calls := 0
			err := tx.Bucket(bA).ForEach(func(k, _ []byte) error {
				calls++
				if string(k) == "b" {
					return errBoom
				}
				return nil
			})
			if !errors.Is(err, errBoom) || calls != 2 {
				t.Errorf("ForEach whose fn fails at b: %v after %d calls, want errBoom after 2", err, calls)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
}
