package pgstore

import "github.com/prometheus/client_golang/prometheus"

// feedMetrics are the change listener's metrics. Their names are fixed:
// deploy/'s Grafana dashboard and alert rules use them.
type feedMetrics struct {
	lag        prometheus.Histogram
	reconnects prometheus.Counter
	up         prometheus.Gauge
}

func newFeedMetrics() *feedMetrics {
	return &feedMetrics{
		lag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "egressd_store_invalidation_lag_seconds",
			Help:    "Time from another replica's write (its change row, at the database's clock) to its delivery to this replica's caches.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
		}),
		reconnects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "egressd_store_listener_reconnects_total",
			Help: "Times the change listener connected again after losing its connection.",
		}),
		up: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "egressd_store_listener_up",
			Help: "1 while the change listener is connected, caught up and heard from the database within its timeout (caches may be used); 0 while replicas' writes may be missed (caches are bypassed).",
		}),
	}
}

func (m *feedMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.lag, m.reconnects, m.up}
}

// Collectors are the store's metrics (egressd_store_invalidation_lag_seconds,
// egressd_store_listener_reconnects_total, egressd_store_listener_up), for
// a registry that did not exist yet when Options.Registerer was set.
func (s *Store) Collectors() []prometheus.Collector { return s.feed.m.collectors() }
