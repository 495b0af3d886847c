package vault

// AuditShipping says how this node's request rows reach the store: the
// audit journal is its spool, and the indexer ships it (audit_index.go).
type AuditShipping struct {
	// Spooled counts the rows journaled and not in the store yet.
	Spooled int64
	// SpoolMax is the bound past which new rows are refused while
	// shipping fails (Config.AuditSpoolMax).
	SpoolMax int64
	// Errors counts the shipments (commits to the store) that failed
	// since Open; each is retried.
	Errors uint64
	// Err is the last shipment's error while shipping fails, nil once one
	// succeeded.
	Err error
}

// AuditShipping reports the state of the audit spool, for metrics and
// readiness. It is cheap (atomic loads).
func (s *Store) AuditShipping() AuditShipping {
	x := s.log.idx
	return AuditShipping{Spooled: x.depth.Load(), SpoolMax: x.spoolMax.Load(), Errors: x.shipErrors.Load(), Err: x.shipping()}
}

// SetAuditSpoolMax changes Config.AuditSpoolMax of the open store: zero or
// less means DefaultAuditSpoolMax.
func (s *Store) SetAuditSpoolMax(n int) { s.log.idx.setSpoolMax(n) }
