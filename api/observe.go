package api

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// recorder remembers what a handler answered, for the request's log line
// and metrics.
type recorder struct {
	http.ResponseWriter
	status  int
	wrote   bool
	errCode string
	cause   error // the cause of a 5xx, for the log only
}

func (r *recorder) WriteHeader(status int) {
	if !r.wrote {
		r.status, r.wrote = status, true
	}
	r.ResponseWriter.WriteHeader(status)
}

func (r *recorder) Write(b []byte) (int, error) {
	if !r.wrote {
		r.status, r.wrote = http.StatusOK, true
	}
	return r.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (r *recorder) code() int {
	if !r.wrote {
		return http.StatusOK
	}
	return r.status
}

// metrics are the API's Prometheus series. Labels are route patterns and
// status codes only, never ids.
type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "egressd_api_requests_total",
			Help: "Admin API requests by route pattern and status code.",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "egressd_api_request_duration_seconds",
			Help:    "Admin API request latency by route pattern.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"route"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.requests, m.duration} {
		if err := reg.Register(c); err != nil {
			var already prometheus.AlreadyRegisteredError
			if errors.As(err, &already) {
				return nil, fmt.Errorf("api: metrics already registered (one api.Server per registry): %w", err)
			}
			return nil, fmt.Errorf("api: register metrics: %w", err)
		}
	}
	return m, nil
}

// observe writes the request's one log line and its metrics: method, route
// pattern, status, tenant and key id, duration. Never a body, a token, a
// query or a value.
func (s *Server) observe(r *http.Request, route string, rec *recorder, p *principal, start time.Time) {
	d := s.now().Sub(start)
	status := rec.code()
	s.metrics.requests.WithLabelValues(route, strconv.Itoa(status)).Inc()
	s.metrics.duration.WithLabelValues(route).Observe(d.Seconds())

	attrs := []slog.Attr{
		slog.String("method", r.Method),
		slog.String("route", route),
		slog.Int("status", status),
		slog.Duration("duration", d),
	}
	if p != nil {
		if p.tenant() != "" {
			attrs = append(attrs, slog.String("tenant_id", p.tenant()))
		}
		attrs = append(attrs, slog.String("key_id", p.key.ID), slog.String("key_kind", string(p.key.Kind)))
	}
	level := slog.LevelInfo
	if rec.errCode != "" {
		attrs = append(attrs, slog.String("error_code", rec.errCode))
	}
	if rec.cause != nil {
		level = slog.LevelError
		attrs = append(attrs, slog.String("error", rec.cause.Error()))
	}
	s.log.LogAttrs(r.Context(), level, "api request", attrs...)
}
