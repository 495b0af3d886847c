package logline

import (
	"bytes"
	"context"
	"log/slog"
	"strconv"
	"sync"
	"time"
)

// DecisionMessage is the decision line's message.
const DecisionMessage = "proxy request"

// Decision is what the decision line of one proxied request says: ids,
// the request's host and path (a placeholder at most, never a value) and
// what became of it.
type Decision struct {
	Sandbox, Tenant, Method, Host, Path string
	Status                              int
	Outcome, Reason                     string
	Substituted, Left, Leaks            int
	Duration                            time.Duration
}

// decisionKeys are the line's keys, in the order it prints them.
var decisionKeys = [...]string{
	"sandbox", "tenant", "method", "host", "path", "status",
	"outcome", "reason", "substituted", "left", "leaks", "duration",
}

// Log writes d's line at level, timed now, through h when h is enabled
// for level: with h's fast path when h is a *Handler, else as an
// slog.Record through h.Handle.
func (d *Decision) Log(ctx context.Context, h slog.Handler, level slog.Level) error {
	return d.logAt(ctx, h, level, time.Now)
}

// logAt is Log with the clock now.
func (d *Decision) logAt(ctx context.Context, h slog.Handler, level slog.Level, now func() time.Time) error {
	if !h.Enabled(ctx, level) {
		return nil
	}
	t := now()
	if lh, ok := h.(*Handler); ok {
		if f := lh.frame(level); f != nil && timeFits(t) {
			bp := bufPool.Get().(*[]byte)
			b := f.append((*bp)[:0], lh.json, t, d)
			_, err := lh.out.Write(b)
			if cap(b) <= maxPooled {
				*bp = b
				bufPool.Put(bp)
			}
			return err
		}
	}
	// The record is made here rather than by Logger.LogAttrs, which would
	// also take the caller's program counter (runtime.Callers) for a
	// source no handler of egressd prints.
	return h.Handle(ctx, d.record(level, t))
}

// record is d's line as slog gets it.
func (d *Decision) record(level slog.Level, t time.Time) slog.Record {
	r := slog.NewRecord(t, level, DecisionMessage, 0)
	k := &decisionKeys
	r.AddAttrs(
		slog.String(k[0], d.Sandbox), slog.String(k[1], d.Tenant),
		slog.String(k[2], d.Method), slog.String(k[3], d.Host), slog.String(k[4], d.Path),
		slog.Int(k[5], d.Status), slog.String(k[6], d.Outcome), slog.String(k[7], d.Reason),
		slog.Int(k[8], d.Substituted), slog.Int(k[9], d.Left), slog.Int(k[10], d.Leaks),
		slog.Duration(k[11], d.Duration))
	return r
}

// bufPool holds the fast path's line buffers; one grown past maxPooled
// (a line with a long path) is left to the collector, as slog does.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

const maxPooled = 16 << 10

// frame is a handler's decision line at one level without its time and
// its values: what slog's handler writes around them.
type frame struct {
	// open precedes the time: "{" in JSON, nothing in text.
	open []byte
	// segs[0] follows the time up to the first value (level, message,
	// the handler's attributes, its groups opened, the first key);
	// segs[i] is the separator and key before value i; the last closes
	// the line (groups, object, newline).
	segs [len(decisionKeys) + 1][]byte
}

// frame returns h's frame for level, nil when the line goes through slog.
func (h *Handler) frame(level slog.Level) *frame {
	i := 0
	switch level {
	case slog.LevelInfo:
	case slog.LevelWarn:
		i = 1
	default:
		return nil
	}
	h.once.Do(func() {
		if h.fast {
			h.frames[0] = h.buildFrame(slog.LevelInfo)
			h.frames[1] = h.buildFrame(slog.LevelWarn)
		}
	})
	return h.frames[i]
}

// timeFits reports whether the fast path encodes t as slog does: slog
// writes an error beside a JSON time outside years 0 to 9999 (the text
// handler is held to the same range).
func timeFits(t time.Time) bool {
	y := t.Year()
	return y >= 0 && y < 10000
}

// buildFrame renders the line at level through h's slog handler with
// marker values, cuts it at the markers, and checks the frame against
// slog's rendering of a line of hostile values. Nil when either fails.
func (h *Handler) buildFrame(level slog.Level) *frame {
	out := h.out
	out.render.Lock()
	defer out.render.Unlock()

	r := slog.NewRecord(time.Time{}, level, DecisionMessage, 0)
	markers := make([][]byte, len(decisionKeys))
	for i, k := range decisionKeys {
		m := string(out.nonce) + strconv.Itoa(100+i) // letters and digits: written as they are
		r.AddAttrs(slog.String(k, m))
		markers[i] = appendString(nil, h.json, m)
	}
	line := out.capture(h.inner, r)
	f := &frame{}
	if h.json {
		if !bytes.HasPrefix(line, []byte("{")) {
			return nil
		}
		f.open, line = line[:1], line[1:]
	}
	for i, m := range markers {
		j := bytes.Index(line, m)
		if j < 0 {
			return nil
		}
		f.segs[i], line = line[:j], line[j+len(m):]
	}
	f.segs[len(markers)] = line
	for _, s := range f.segs {
		if bytes.Contains(s, out.nonce) {
			return nil
		}
	}

	// The check: hostile values (quotes, escapes, control bytes, invalid
	// UTF-8, U+2028, HTML, spaces, '=') and a time in an odd zone.
	d := &Decision{
		Sandbox: "sbx \"1\"\\", Tenant: "", Method: "G=T", Host: "<h>&\u2028\u2029\x7f",
		Path:   "/p\x00\x1f\t\n\r\xff\xe2\x80\u00a0é" + string(out.nonce),
		Status: -200, Outcome: "substituted", Reason: "a b", Substituted: 3, Left: 1 << 40, Leaks: -1,
		Duration: -1234567891 * time.Nanosecond,
	}
	t := time.Date(2026, 12, 7, 16, 17, 9, 120000000, time.FixedZone("odd", -(3*3600+30*60)))
	want := out.capture(h.inner, d.record(level, t))
	if got := f.append(nil, h.json, t, d); !bytes.Equal(got, want) {
		return nil
	}
	return f
}

// append appends d's line at time t to b.
func (f *frame) append(b []byte, json bool, t time.Time, d *Decision) []byte {
	b = append(b, f.open...)
	if !t.IsZero() {
		if json {
			b = append(appendTime(append(b, `"time":"`...), true, t), `",`...)
		} else {
			b = append(appendTime(append(b, "time="...), false, t), ' ')
		}
	}
	s := &f.segs
	b = appendString(append(b, s[0]...), json, d.Sandbox)
	b = appendString(append(b, s[1]...), json, d.Tenant)
	b = appendString(append(b, s[2]...), json, d.Method)
	b = appendString(append(b, s[3]...), json, d.Host)
	b = appendString(append(b, s[4]...), json, d.Path)
	b = strconv.AppendInt(append(b, s[5]...), int64(d.Status), 10)
	b = appendString(append(b, s[6]...), json, d.Outcome)
	b = appendString(append(b, s[7]...), json, d.Reason)
	b = strconv.AppendInt(append(b, s[8]...), int64(d.Substituted), 10)
	b = strconv.AppendInt(append(b, s[9]...), int64(d.Left), 10)
	b = strconv.AppendInt(append(b, s[10]...), int64(d.Leaks), 10)
	b = append(b, s[11]...)
	if json {
		b = strconv.AppendInt(b, int64(d.Duration), 10) // as slog and encoding/json
	} else {
		b = append(b, d.Duration.String()...)
	}
	return append(b, s[12]...)
}
