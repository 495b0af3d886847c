package boltstore

import (
	bolt "go.etcd.io/bbolt"
)

// BucketNames lists the file's buckets in order: what a copy of the whole
// file to another backend walks (egressd store copy), where the seam has
// no listing.
func (s *Store) BucketNames() ([][]byte, error) {
	var names [][]byte
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, _ *bolt.Bucket) error {
			names = append(names, append([]byte(nil), name...))
			return nil
		})
	})
	return names, err
}
