package proxy

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/elazarl/goproxy"

	"github.com/egressd/egressd/internal/logline"
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
	p.respond(st, resp)
	p.finalize(st)
	return resp
}

// respond masks echoed values in the response's headers and body and notes
// its status. The request is recorded later, by finalize.
func (p *Proxy) respond(st *reqState, resp *http.Response) {
	st.status = resp.StatusCode
	var echoes []echo
	live := false
	if p.cfg.Redact && st.sub != nil {
		echoes, live = st.sub.snapshot()
	}
	if len(echoes) == 0 && !live {
		if st.askedGzip {
			undoAskedGzip(resp)
		}
		return
	}
	redactHeader(resp.Header, echoes)
	// The trailers' names are announced with the header: mask them now
	// (their values are masked at the end of the body).
	redactHeader(resp.Trailer, echoes)
	if !decodeForRedaction(resp) {
		// A coding egressd cannot read, or more than one, could carry a
		// value back: refuse the body rather than pass it unchecked (fail
		// closed).
		resp.Body.Close()
		*resp = *errorResponse(resp.Request, http.StatusBadGateway, ReasonNone,
			"the upstream's answer uses a content encoding egressd cannot check for echoed credentials")
		st.status, st.upstreamErr = resp.StatusCode, true
		return
	}
	// Every content type is scanned: a value echoed in a binary or
	// untyped body is masked too.
	if bodyless(resp) {
		return
	}
	if !live && resp.ContentLength >= 0 && resp.ContentLength <= p.cfg.MaxBufferedBody {
		// A body of known, bufferable size is masked whole and keeps an exact
		// Content-Length: no chunking, no flush after every write.
		body, ok := readDeclared(resp.Body, resp.ContentLength)
		resp.Body.Close()
		if !ok {
			*resp = *errorResponse(resp.Request, http.StatusBadGateway, ReasonNone, "the upstream's answer was cut short")
			st.status, st.upstreamErr = resp.StatusCode, true
			return
		}
		out := maskAll(body, echoes)
		bb := new(bufferedBody)
		bb.Reset(out)
		resp.Body = bb
		resp.ContentLength = int64(len(out))
		resp.Header["Content-Length"] = []string{strconv.Itoa(len(out))}
		return
	}
	// The redactor takes the declared length first: a body that ends
	// short of it broke off.
	resp.Body = newRedactor(resp.Body, st.sub, resp)
	resp.ContentLength = -1
	resp.Header.Del("Content-Length")
}

// readDeclared reads a body of n declared bytes whole, in one buffer of
// that size, and its end: false when it ends sooner or goes on longer (or
// fails). Reading up to the end lets the transport keep the upstream
// connection.
func readDeclared(r io.Reader, n int64) ([]byte, bool) {
	b := make([]byte, n, n+1)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, false
	}
	for range 8 { // a reader that keeps answering nothing is given up on
		k, err := r.Read(b[n : n+1]) // the spare byte: past the end
		if k > 0 || err != nil && err != io.EOF {
			return nil, false
		}
		if err == io.EOF {
			return b, true
		}
	}
	return nil, false
}

// bufferedBody is a masked body held whole.
type bufferedBody struct{ bytes.Reader }

func (*bufferedBody) Close() error { return nil }

// finalize logs and records the request, once, after everything about it
// is known: a streamed body may substitute values after the response began.
func (p *Proxy) finalize(st *reqState) {
	if st == nil || st.done {
		return
	}
	st.done = true
	ev := p.event(st)
	ev.Final, ev.Status = true, st.status
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
		st.sub.recorded = true
		ev.Uses = append(ev.Uses, st.sub.uses...)
		ev.UsesDropped = st.sub.dropped
		st.sub.mu.Unlock()
		for _, u := range ev.Uses {
			if u.Action == ActionSubstituted {
				if ev.Outcome == OutcomePassed {
					ev.Outcome = OutcomeSubstituted
				}
				p.metrics.substituted(u.Level)
			}
		}
	}
	p.finish(st.ctx, ev, nil)
}

// event starts the record of a request from what prepare learned.
func (p *Proxy) event(st *reqState) *Event {
	if st == nil {
		now := p.cfg.Now()
		return &Event{ID: newEventID(now), Time: now}
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
	series := p.metrics.outcome(ev.Outcome)
	series.requests.Inc()
	series.duration.Observe(ev.Duration.Seconds())
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
	if ctx == nil {
		ctx = context.Background()
	}
	d := logline.Decision{
		Sandbox: ev.SandboxID, Tenant: ev.TenantID, Method: ev.Method, Host: ev.Host, Path: ev.Path,
		Status: ev.Status, Outcome: string(ev.Outcome), Reason: ev.Reason,
		Substituted: substituted, Left: left, Leaks: leaks, Duration: ev.Duration,
	}
	_ = d.Log(ctx, p.log.Handler(), level)
	if ev.ID == "" {
		ev.ID = newEventID(ev.Time)
	}
	ev.Final = true
	if p.cfg.Sink != nil && (len(ev.Uses) > 0 || ev.Outcome == OutcomeDenied) {
		if err := p.cfg.Sink.Record(ctx, ev); err != nil {
			p.log.Error("audit sink", "err", err.Error())
		}
	}
}
