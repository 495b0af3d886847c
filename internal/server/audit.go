package server

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/egressd/egressd/vault"
)

// auditReady is the /readyz check of the audit shipping (issue 14): nil
// while this node's journaled audit rows reach the store, an error while
// shipping them fails. Meanwhile the node still journals request rows (up
// to --audit-spool-max, then refuses them with 503 audit_unavailable), but
// the load balancer should prefer the replicas whose rows reach the store.
func auditReady(st *vault.Store) error {
	sh := st.AuditShipping()
	if sh.Err == nil {
		return nil
	}
	return fmt.Errorf("the audit rows journaled here cannot be shipped to the store (%d waiting, refused past %d): %v", sh.Spooled, sh.SpoolMax, sh.Err)
}

// auditCollectors are the audit spool's metrics. Their names are fixed:
// deploy/'s dashboard and alert rules use them.
func auditCollectors(st *vault.Store) []prometheus.Collector {
	return []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "egressd_audit_spool_depth",
			Help: "Audit rows journaled on this node and not yet shipped to the store.",
		}, func() float64 { return float64(st.AuditShipping().Spooled) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "egressd_audit_ship_errors_total",
			Help: "Shipments of journaled audit rows to the store that failed (each is retried).",
		}, func() float64 { return float64(st.AuditShipping().Errors) }),
	}
}
