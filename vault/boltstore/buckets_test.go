package boltstore

import (
	"path/filepath"
	"testing"
)

func TestBucketNames(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "b.db"), Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.EnsureBuckets([]byte("zeta"), []byte("alpha"), []byte("mid")); err != nil {
		t.Fatal(err)
	}
	names, err := s.BucketNames()
	if err != nil || len(names) != 3 || string(names[0]) != "alpha" || string(names[1]) != "mid" || string(names[2]) != "zeta" {
		t.Fatalf("%q %v", names, err)
	}
}
