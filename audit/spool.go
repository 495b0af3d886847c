package audit

// Shipping says how this node's request rows reach the store: the
// audit journal is its spool, and the indexer ships it (index.go).
type Shipping struct {
	// Spooled counts the rows journaled and not in the store yet.
	Spooled int64
	// SpoolMax is the bound past which new rows are refused while
	// shipping fails (Config.SpoolMax).
	SpoolMax int64
	// Errors counts the shipments (commits to the store) that failed
	// since Open; each is retried.
	Errors uint64
	// Err is the last shipment's error while shipping fails, nil once one
	// succeeded.
	Err error
}

// Shipping reports the state of the audit spool, for metrics and
// readiness. It is cheap (atomic loads).
func (l *Log) Shipping() Shipping {
	x := l.idx
	return Shipping{Spooled: x.depth.Load(), SpoolMax: x.spoolMax.Load(), Errors: x.shipErrors.Load(), Err: x.shipping()}
}

// SetSpoolMax changes Config.SpoolMax of the open store: zero or
// less means DefaultSpoolMax.
func (l *Log) SetSpoolMax(n int) { l.idx.setSpoolMax(n) }
