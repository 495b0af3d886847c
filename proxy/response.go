package proxy

import (
	"context"
	"log/slog"
	"mime"
	"net/http"
	"strings"

	"github.com/elazarl/goproxy"
)

// onResponse completes a plain proxy request (goproxy's path).
func (p *Proxy) onResponse(resp *http.Response, ctx *goproxy.ProxyCtx) *http.Response {
	st, ok := ctx.UserData.(*reqState)
	if !ok {
		return resp
	}
	if resp == nil {
		st.upstreamErr = true
		resp = errorResponse(ctx.Req, http.StatusBadGateway, ReasonNone, "no response from upstream")
	}
	p.complete(st, resp)
	return resp
}

// complete masks echoed values in the response, then logs and records the
// request.
func (p *Proxy) complete(st *reqState, resp *http.Response) {
	if p.cfg.Redact && st.sub != nil && len(st.sub.echoes) > 0 && redactable(resp) {
		resp.Body = newRedactor(resp.Body, st.sub.echoes)
		resp.ContentLength = -1
		resp.Header.Del("Content-Length")
	}
	ev := p.event(st)
	ev.Final, ev.Status = true, resp.StatusCode
	switch {
	case st.deny != ReasonNone:
		ev.Outcome, ev.Reason = OutcomeDenied, st.deny.String()
	case st.upstreamErr:
		ev.Outcome = OutcomeUpstreamError
	default:
		ev.Outcome = OutcomePassed
	}
	if st.sub != nil {
		st.sub.mu.Lock()
		ev.Uses = append(ev.Uses, st.sub.uses...)
		st.sub.mu.Unlock()
		for _, u := range ev.Uses {
			if u.Action == ActionSubstituted {
				if ev.Outcome == OutcomePassed {
					ev.Outcome = OutcomeSubstituted
				}
				p.metrics.substitutions.WithLabelValues(u.Level).Inc()
			}
		}
	}
	ctx := context.Background()
	if resp.Request != nil {
		ctx = resp.Request.Context()
	}
	p.finish(ctx, ev, resp)
}

// event starts the record of a request from what prepare learned.
func (p *Proxy) event(st *reqState) *Event {
	if st == nil {
		return &Event{ID: newEventID(), Time: p.cfg.Now()}
	}
	ev := &Event{ID: st.id, Time: st.start, Method: st.method, Path: st.path, Host: st.host}
	if st.sess != nil {
		stampIdentity(ev, &st.sess.sbx)
	}
	return ev
}

// finish writes the decision line, the metrics and the audit event. Only
// requests that carried a placeholder or were refused reach the sink.
func (p *Proxy) finish(ctx context.Context, ev *Event, _ *http.Response) {
	ev.Duration = p.cfg.Now().Sub(ev.Time)
	p.metrics.requests.WithLabelValues(string(ev.Outcome)).Inc()
	p.metrics.duration.WithLabelValues(string(ev.Outcome)).Observe(ev.Duration.Seconds())
	if ev.Reason != "" {
		p.metrics.denials.WithLabelValues(ev.Reason).Inc()
	}
	level := slog.LevelInfo
	if ev.Outcome == OutcomeDenied || ev.Outcome == OutcomeUpstreamError {
		level = slog.LevelWarn
	}
	substituted, left, leaks := 0, 0, 0
	for _, u := range ev.Uses {
		switch {
		case u.Leak:
			leaks++
		case u.Action == ActionSubstituted:
			substituted++
		default:
			left++
		}
	}
	p.log.LogAttrs(ctx, level, "proxy request",
		slog.String("sandbox", ev.SandboxID), slog.String("tenant", ev.TenantID),
		slog.String("method", ev.Method), slog.String("host", ev.Host), slog.String("path", ev.Path),
		slog.Int("status", ev.Status), slog.String("outcome", string(ev.Outcome)), slog.String("reason", ev.Reason),
		slog.Int("substituted", substituted), slog.Int("left", left), slog.Int("leaks", leaks),
		slog.Duration("duration", ev.Duration))
	if ev.ID == "" {
		ev.ID = newEventID()
	}
	ev.Final = true
	if p.cfg.Sink != nil && (len(ev.Uses) > 0 || ev.Outcome == OutcomeDenied) {
		if err := p.cfg.Sink.Record(ctx, ev); err != nil {
			p.log.Error("audit sink", "err", err.Error())
		}
	}
}

// redactable: a text-like, unencoded response.
func redactable(resp *http.Response) bool {
	if resp.Body == nil || resp.Body == http.NoBody || resp.StatusCode == http.StatusSwitchingProtocols {
		return false
	}
	if ce := resp.Header.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
		return false
	}
	mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err != nil {
		return false
	}
	return strings.HasPrefix(mt, "text/") || strings.HasSuffix(mt, "json") || strings.HasSuffix(mt, "+xml") ||
		mt == "application/xml" || mt == "application/javascript" || mt == "application/x-www-form-urlencoded" ||
		mt == "application/x-ndjson"
}
