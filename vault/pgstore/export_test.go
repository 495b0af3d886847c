package pgstore

// For the tests of package pgstore_test (cluster_test.go).
var (
	TestDSN      = testDSN
	FreshSchema  = freshSchema
	KillListener = killListener
)

// PruneAll deletes every row of the change log, as pruning does once
// rows are older than ChangeRetention.
func (s *Store) PruneAll() error {
	_, err := s.pool.Exec(s.feed.ctx, s.feed.q.prune, 0.0)
	return err
}
