package audit

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/egressd/egressd/vault/storage"
)

// TestAuditPostings adds and removes positions of a few prefixes at
// random (in time order mostly, out of it often enough to split full
// chunks), and checks after every step of each round that the bucket
// holds exactly the positions of a plain set, and that walks from any
// bound give them newest first.
func TestAuditPostings(t *testing.T) {
	s := openTest(t)
	rng := rand.New(rand.NewPCG(7, 11))
	prefixes := [][]byte{auditIndexPrefix("ten_a", "x"), auditIndexPrefix("ten_a", "y"), auditIndexPrefix("ten_b", "x")}
	want := map[string][]string{} // prefix → positions
	var all [][]byte
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for round := range 40 {
		err := s.db.Update(func(tx storage.Tx) error {
			b := tx.Bucket(bAuditBySandbox)
			for range 100 {
				p := prefixes[rng.IntN(len(prefixes))]
				if len(all) > 0 && rng.IntN(4) == 0 {
					pos := all[rng.IntN(len(all))]
					if err := removePosting(b, b.Cursor(), p, pos); err != nil {
						return err
					}
					want[string(p)] = slices.DeleteFunc(want[string(p)], func(x string) bool { return x == string(pos) })
					continue
				}
				at := base.Add(time.Duration(round*100+rng.IntN(120)) * time.Second)
				id := NewID(at)
				if rng.IntN(10) == 0 {
					id = fmt.Sprintf("req_%d", rng.IntN(50))
				}
				pos := auditPos(auditTime(at), id)
				all = append(all, pos)
				if err := addPosting(b, b.Cursor(), p, pos); err != nil {
					return err
				}
				if !slices.Contains(want[string(p)], string(pos)) {
					want[string(p)] = append(want[string(p)], string(pos))
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.db.View(func(tx storage.Tx) error {
			b := tx.Bucket(bAuditBySandbox)
			have := map[string][]string{}
			if err := forEachPosting(b, func(p, pos []byte) { have[string(p)] = append(have[string(p)], string(pos)) }); err != nil {
				return err
			}
			// Chunks in key order hold ascending, disjoint ranges.
			if err := b.ForEach(func(k, v []byte) error {
				ps, _ := splitPositions(v, nil)
				if len(ps) == 0 || len(ps) > auditChunkRows || !bytes.Equal(k[auditIndexPrefixLen:], ps[0]) {
					t.Fatalf("round %d: chunk %q of %d positions, first %q", round, k, len(ps), ps[0])
				}
				return nil
			}); err != nil {
				return err
			}
			for _, p := range prefixes {
				w := slices.Clone(want[string(p)])
				slices.Sort(w)
				if !slices.Equal(have[string(p)], w) {
					t.Fatalf("round %d: %d positions, want %d (or out of order)", round, len(have[string(p)]), len(w))
				}
				slices.Reverse(w)
				for _, from := range []int{-1, 0, len(w) / 3, len(w) - 1} {
					var upper []byte
					exp := w
					if from >= 0 && from < len(w) {
						upper, exp = []byte(w[from]), w[from+1:]
					}
					it := newPostingIter(b, p, upper)
					var got []string
					for pos := it.next(); pos != nil; pos = it.next() {
						got = append(got, string(pos))
					}
					if it.err != nil || !slices.Equal(got, exp) {
						t.Fatalf("round %d: walk from %d: %d positions (%v), want %d", round, from, len(got), it.err, len(exp))
					}
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestAuditAddPostingsSameChunks adds the same positions, ascending, one
// by one (addPosting) to one bucket and a prefix's run at once
// (addPostings) to another, round after round (mostly after what is there, some older,
// some there already, chunks filling and splitting), and checks that both
// buckets hold the same keys and values: batching changes no chunk.
func TestAuditAddPostingsSameChunks(t *testing.T) {
	s := openTest(t)
	rng := rand.New(rand.NewPCG(3, 5))
	prefixes := [][]byte{auditIndexPrefix("ten_a", "x"), auditIndexPrefix("ten_a", "y"), auditIndexPrefix("ten_b", "x")}
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var all [][]byte
	for round := range 30 {
		runs := map[string][][]byte{}
		for range 1 + rng.IntN(300) {
			p := prefixes[rng.IntN(len(prefixes))]
			var pos []byte
			switch n := rng.IntN(20); {
			case n == 0 && len(all) > 0:
				pos = all[rng.IntN(len(all))] // there already, or of another prefix
			case n < 3:
				pos = auditPos(auditTime(base.Add(time.Duration(rng.IntN(round*200+1))*time.Second)), NewID(base)) // older
			default:
				pos = auditPos(auditTime(base.Add(time.Duration(round*200+rng.IntN(200))*time.Second)), fmt.Sprintf("req_%d", rng.IntN(1000)))
			}
			all = append(all, pos)
			runs[string(p)] = append(runs[string(p)], pos)
		}
		err := s.db.Update(func(tx storage.Tx) error {
			one, many := tx.Bucket(bAuditBySandbox), tx.Bucket(bAuditByExtUser)
			c1, c2 := one.Cursor(), many.Cursor()
			for _, p := range prefixes {
				run := slices.Clone(runs[string(p)])
				slices.SortFunc(run, bytes.Compare)
				for _, pos := range run {
					if err := addPosting(one, c1, p, pos); err != nil {
						return err
					}
				}
				run = slices.CompactFunc(run, bytes.Equal)
				if err := addPostings(many, c2, p, run); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.db.View(func(tx storage.Tx) error {
			dump := func(b storage.Bucket) (out []string) {
				b.ForEach(func(k, v []byte) error { out = append(out, fmt.Sprintf("%x=%x", k, v)); return nil })
				return out
			}
			one, many := dump(tx.Bucket(bAuditBySandbox)), dump(tx.Bucket(bAuditByExtUser))
			if !slices.Equal(one, many) {
				t.Fatalf("round %d: one by one %d chunks, at once %d, or different ones", round, len(one), len(many))
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
}
