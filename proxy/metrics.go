package proxy

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/egressd/egressd/resolver"
)

// metrics are the proxy's Prometheus series. Labels never carry ids.
type metrics struct {
	requests      *prometheus.CounterVec
	substitutions *prometheus.CounterVec
	denials       *prometheus.CounterVec
	leaks         prometheus.Counter
	duration      *prometheus.HistogramVec
	upstreamErrs  prometheus.Counter
	tunnels       prometheus.Gauge
	conns         prometheus.Gauge
	// transparent counts the transparent listener's connections by how
	// they went: mitm, tunnel, http (plain HTTP) or refused.
	transparent *prometheus.CounterVec

	// byOutcome and byLevel hold the series of the known label values,
	// looked up once here rather than hashed on every request. Read only
	// after newMetrics.
	byOutcome map[Outcome]outcomeSeries
	byLevel   map[string]prometheus.Counter
}

type outcomeSeries struct {
	requests prometheus.Counter
	duration prometheus.Observer
}

// outcome returns the request counter and duration histogram of o.
func (m *metrics) outcome(o Outcome) outcomeSeries {
	if s, ok := m.byOutcome[o]; ok {
		return s
	}
	return outcomeSeries{m.requests.WithLabelValues(string(o)), m.duration.WithLabelValues(string(o))}
}

// substituted counts a substitution resolved at level.
func (m *metrics) substituted(level string) {
	if c, ok := m.byLevel[level]; ok {
		c.Inc()
		return
	}
	m.substitutions.WithLabelValues(level).Inc()
}

func newMetrics(reg prometheus.Registerer, certCacheSize func() float64) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "egressd_proxy_requests_total", Help: "Proxied requests by outcome.",
		}, []string{"outcome"}),
		substitutions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "egressd_proxy_substitutions_total", Help: "Placeholders substituted, by the level of the walk that resolved them.",
		}, []string{"level"}),
		denials: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "egressd_proxy_denials_total", Help: "Refused requests and CONNECTs by reason.",
		}, []string{"reason"}),
		leaks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "egressd_proxy_placeholder_leaks_total", Help: "Placeholders seen in the traffic of a sandbox they were not issued to.",
		}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "egressd_proxy_request_duration_seconds", Help: "Time from request read to response headers, by outcome.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"outcome"}),
		upstreamErrs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "egressd_proxy_upstream_errors_total", Help: "Upstream round trips that failed.",
		}),
		tunnels: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "egressd_proxy_active_tunnels", Help: "CONNECT tunnels open now (MITM and pass-through).",
		}),
		conns: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "egressd_proxy_open_connections", Help: "Client connections open now.",
		}),
	}
	m.transparent = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "egressd_proxy_transparent_connections_total", Help: "Connections taken by the transparent listener, by result (mitm, tunnel, http, refused).",
	}, []string{"result"})
	for _, r := range []string{"mitm", "tunnel", "http", "refused"} {
		m.transparent.WithLabelValues(r)
	}
	m.byOutcome = map[Outcome]outcomeSeries{}
	for _, o := range []Outcome{OutcomeSubstituted, OutcomePassed, OutcomeDenied, OutcomeUpstreamError, OutcomeTunnelled} {
		m.byOutcome[o] = outcomeSeries{m.requests.WithLabelValues(string(o)), m.duration.WithLabelValues(string(o))}
	}
	// Every reason's series exists from the start at 0, so that a rate or
	// increase() sees a replica's first refusal of a kind.
	for _, name := range reasonNames[1:] {
		m.denials.WithLabelValues(name)
	}
	m.byLevel = map[string]prometheus.Counter{}
	for _, l := range resolver.Levels {
		m.byLevel[l.String()] = m.substitutions.WithLabelValues(l.String())
	}
	if reg == nil {
		return m, nil
	}
	cs := []prometheus.Collector{m.requests, m.substitutions, m.denials, m.leaks, m.duration, m.upstreamErrs, m.tunnels, m.conns, m.transparent}
	if certCacheSize != nil {
		cs = append(cs, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "egressd_proxy_cert_cache_size", Help: "Leaf certificates in the MITM cache.",
		}, certCacheSize))
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
