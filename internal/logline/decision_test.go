package logline

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// chain is what a logger carries: the same calls are made on slog's own
// handler and on a Handler.
type chain struct {
	name string
	with func(slog.Handler) slog.Handler
}

// counter resolves to how often it was resolved: a handler that resolved
// a With attribute twice would print 2.
type counter struct{ n *int }

func (c counter) LogValue() slog.Value { *c.n++; return slog.IntValue(*c.n) }

// secretish redacts itself, as egressd's secret types do.
type secretish struct{}

func (secretish) LogValue() slog.Value { return slog.StringValue("[redacted]") }

// emptyGroup resolves to a group with no attributes.
type emptyGroup struct{}

func (emptyGroup) LogValue() slog.Value { return slog.GroupValue() }

const hostile = "a \"b\" \\c\x00\x01\x1f\x7f\t\n\r\xff\xc3(\xe2\x82 \u2028\u2029<>&'= é\u00a0\ufffd\U0001F600"

func chains() []chain {
	attrs := func(as ...slog.Attr) func(slog.Handler) slog.Handler {
		return func(h slog.Handler) slog.Handler { return h.WithAttrs(as) }
	}
	group := func(name string) func(slog.Handler) slog.Handler {
		return func(h slog.Handler) slog.Handler { return h.WithGroup(name) }
	}
	then := func(fs ...func(slog.Handler) slog.Handler) func(slog.Handler) slog.Handler {
		return func(h slog.Handler) slog.Handler {
			for _, f := range fs {
				h = f(h)
			}
			return h
		}
	}
	return []chain{
		{"bare", then()},
		{"serve's component", attrs(slog.String("component", "proxy"))},
		{"two With", then(attrs(slog.String("component", "proxy")), attrs(slog.String("k", hostile), slog.Int("n", -3)))},
		{"hostile keys", attrs(slog.String(hostile, "v"), slog.String("", "empty key"), slog.String("a=b c", hostile))},
		{"kinds", attrs(slog.Bool("b", true), slog.Float64("f", 1e21), slog.Float64("g", 0.000001), slog.Uint64("u", 1<<63),
			slog.Time("t", time.Date(2001, 2, 3, 4, 5, 6, 7, time.UTC)), slog.Duration("d", 90*time.Minute),
			slog.Any("err", errors.New("e\"rr")), slog.Any("bytes", []byte("b\x00y")), slog.Any("nil", nil),
			slog.Any("map", map[string]int{"<a>": 1}), slog.Any("secret", secretish{}))},
		{"group", group("req")},
		{"group then attrs", then(group("req"), attrs(slog.Int("a", 1)))},
		{"attrs, groups, attrs", then(attrs(slog.Group("g", "x", 1, "y", hostile)), group("a b"), group("c=d"),
			attrs(slog.String("e\"", hostile)), group("inner"))},
		{"empty group name", group("")},
		{"hostile group", then(group(hostile), attrs(slog.Int("x", 1)), group(hostile))},
		{"empty group attr", then(group("g"), attrs(slog.Group("empty")))},
		{"resolves to an empty group", then(group("g"), attrs(slog.Any("eg", emptyGroup{})))},
		{"inline group", attrs(slog.Group("", slog.String("inl", "ined")))},
		{"deep groups", then(group("a"), group("b"), group("c"), attrs(slog.Group("d", slog.Group("e", slog.Int("f", 1)))))},
	}
}

// pieces are strings each escaped or quoted for its own reason (or not
// at all), alone in a value and amid plain text.
var pieces = []string{
	"", "a", "{{secret:openai}}", `"`, `\`, "\x00", "\x1f", "\x7f", "\t", "\n", "\r", "\xff", "\xc3(", "\xe2\x82",
	"\xed\xa0\x80", " ", "=", "<", ">", "&", "'", "\u2028", "\u2029", "\u00a0", "\ufffd", "é", "\U0001F600",
	"\u200b", "\u0085", "\u3000", "\u00ad", "\U000e0001", "\uffff",
}

// decisions are lines of ordinary and hostile values.
func decisions() []Decision {
	ds := []Decision{
		{Sandbox: "sbx_1", Tenant: "ten_1", Method: "GET", Host: "api.test", Path: "/v1/models", Status: 200,
			Outcome: "substituted", Substituted: 1, Duration: 1234567 * time.Nanosecond},
		{},
		{Sandbox: hostile, Tenant: hostile, Method: hostile, Host: hostile, Path: hostile, Status: -1,
			Outcome: hostile, Reason: hostile, Substituted: -1 << 63, Left: 1<<63 - 1, Leaks: 7, Duration: -1 << 63},
		{Path: "/{{secret:openai}}?q=<script>&x=\"1\"", Reason: "host_not_allowed", Host: "xn--80ak6aa92e.com", Duration: 1<<63 - 1},
		{Path: "\xff\xfe\xfd", Host: "\xed\xa0\x80", Method: "\u2028", Reason: " ", Outcome: "=", Duration: time.Hour + time.Nanosecond},
		{Path: strings.Repeat("/long\u2029", 4000), Duration: 999 * time.Millisecond},
	}
	for _, p := range pieces {
		q := "a" + p + "b"
		ds = append(ds, Decision{Sandbox: p, Tenant: q, Method: p, Host: q, Path: p, Outcome: q, Reason: p})
	}
	return ds
}

var times = []time.Time{
	time.Date(2026, 12, 7, 16, 17, 9, 0, time.UTC),
	time.Date(2026, 12, 7, 16, 17, 9, 123456789, time.UTC),
	time.Date(2026, 12, 7, 16, 17, 9, 100000000, time.UTC).In(time.FixedZone("x", 3600)), // the same second elsewhere
	time.Date(2026, 12, 7, 16, 17, 9, 999999999, time.Local),
	time.Date(2026, 1, 1, 0, 0, 0, 100000, time.FixedZone("x", 5*3600+45*60)),
	time.Date(1, 1, 1, 0, 0, 0, 1, time.FixedZone("y", -12*3600-17)),
	time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.Local),
	time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), // slog prints an error beside it: through slog
	time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC),
	time.Now(),
	{}, // no time
}

// both returns slog's own handler and a Handler of the same format and
// options, each with ch's calls made, and the buffers they write to.
func both(format Format, opts *slog.HandlerOptions, ch chain) (ref, h slog.Handler, refOut, out *bytes.Buffer) {
	refOut, out = new(bytes.Buffer), new(bytes.Buffer)
	if format == JSON {
		ref = slog.NewJSONHandler(refOut, opts)
	} else {
		ref = slog.NewTextHandler(refOut, opts)
	}
	return ch.with(ref), ch.with(NewHandler(out, opts, format)), refOut, out
}

// The decision line's bytes through the fast path are slog's, for every
// value, carried attribute, group, level and filter.
func TestDecisionLineEqualsSlog(t *testing.T) {
	ctx := context.Background()
	levels := []slog.Level{slog.LevelDebug, slog.LevelInfo, slog.LevelWarn, slog.LevelError}
	for _, format := range []Format{JSON, Text} {
		for _, ch := range chains() {
			for _, filter := range levels {
				ref, h, refOut, out := both(format, &slog.HandlerOptions{Level: filter}, ch)
				for _, level := range levels {
					for i, d := range decisions() {
						tms := times[i%len(times) : i%len(times)+1]
						if i == 0 {
							tms = times
						}
						for _, tm := range tms {
							refOut.Reset()
							out.Reset()
							now := func() time.Time { return tm }
							if err := d.logAt(ctx, ref, level, now); err != nil {
								t.Fatal(err)
							}
							if err := d.logAt(ctx, h, level, now); err != nil {
								t.Fatal(err)
							}
							if !bytes.Equal(out.Bytes(), refOut.Bytes()) {
								t.Fatalf("format %d, %s, filter %v, level %v, time %v:\n got %q\nwant %q", format, ch.name, filter, level, tm, out, refOut)
							}
							if level >= filter && refOut.Len() == 0 {
								t.Fatalf("%s: slog wrote nothing", ch.name)
							}
						}
					}
				}
				// The fast path was taken, not slog's: a frame was found and
				// passed its check.
				lh := h.(*Handler)
				for i, level := range []slog.Level{slog.LevelInfo, slog.LevelWarn} {
					if level >= filter && lh.frames[i] == nil {
						t.Errorf("format %d, %s, level %v: no frame, every line went through slog", format, ch.name, level)
					}
				}
			}
		}
	}
}

// A With attribute is resolved once, as slog resolves it, not once more
// for the frame.
func TestDecisionLineResolvesWithOnce(t *testing.T) {
	for _, format := range []Format{JSON, Text} {
		var n, m int
		refOut, out := new(bytes.Buffer), new(bytes.Buffer)
		var ref slog.Handler = slog.NewTextHandler(refOut, nil)
		if format == JSON {
			ref = slog.NewJSONHandler(refOut, nil)
		}
		ref = ref.WithAttrs([]slog.Attr{slog.Any("n", counter{&n})})
		h := NewHandler(out, nil, format).WithAttrs([]slog.Attr{slog.Any("n", counter{&m})})
		tm := time.Now()
		d := decisions()[0]
		for range 3 {
			_ = d.logAt(context.Background(), ref, slog.LevelInfo, func() time.Time { return tm })
			_ = d.logAt(context.Background(), h, slog.LevelInfo, func() time.Time { return tm })
		}
		if out.String() != refOut.String() || h.(*Handler).frames[0] == nil {
			t.Fatalf("got %q, want %q (fast path: %v)", out, refOut, h.(*Handler).frames[0] != nil)
		}
	}
}

// Options the frame cannot hold (ReplaceAttr, AddSource) send every line
// through slog, with slog's bytes.
func TestDecisionLineOptionsThroughSlog(t *testing.T) {
	for _, opts := range []*slog.HandlerOptions{
		{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == "path" {
				a.Value = slog.StringValue("[path]")
			}
			return a
		}},
		{AddSource: true},
	} {
		for _, format := range []Format{JSON, Text} {
			ref, h, refOut, out := both(format, opts, chains()[1])
			tm := time.Now()
			for _, d := range decisions() {
				_ = d.logAt(context.Background(), ref, slog.LevelInfo, func() time.Time { return tm })
				_ = d.logAt(context.Background(), h, slog.LevelInfo, func() time.Time { return tm })
			}
			if out.String() != refOut.String() || refOut.Len() == 0 {
				t.Fatalf("got %q, want %q", out, refOut)
			}
			if h.(*Handler).frames[0] != nil {
				t.Fatal("a frame for options it cannot hold")
			}
		}
	}
}

// Other lines go through slog's handler unchanged, and no line holds the
// frame's nonce.
func TestHandlerOtherLines(t *testing.T) {
	for _, format := range []Format{JSON, Text} {
		for _, ch := range chains() {
			ref, h, refOut, out := both(format, nil, ch)
			tm := time.Now()
			for _, hh := range []slog.Handler{ref, h} {
				l := slog.New(hh)
				l.Info("a", "k", hostile)
				l.WithGroup("g").With("x", 1).Warn("b", slog.Group("q", "r", 2))
				_ = decisions()[0].logAt(context.Background(), hh, slog.LevelWarn, func() time.Time { return tm })
				l.Error("c")
				l.Debug("not written")
			}
			got := withoutTimes(out.String())
			want := withoutTimes(refOut.String())
			if got != want {
				t.Fatalf("%s:\n got %q\nwant %q", ch.name, got, want)
			}
			if lh := h.(*Handler); bytes.Contains(out.Bytes(), lh.out.nonce) {
				t.Fatalf("the nonce was written: %q", out)
			}
		}
	}
}

// withoutTimes blanks the times slog.Logger stamps lines with.
func withoutTimes(s string) string {
	var b strings.Builder
	for line := range strings.Lines(s) {
		if i := strings.Index(line, "time"); i >= 0 {
			if j := strings.Index(line[i:], "level"); j >= 0 {
				line = line[:i] + line[i+j:]
			}
		}
		b.WriteString(line)
	}
	return b.String()
}

// Lines written at once by many goroutines, through both paths, come out
// whole: one Write each under the handler's one mutex.
func TestDecisionLineConcurrent(t *testing.T) {
	out := new(bytes.Buffer)
	h := NewHandler(out, nil, JSON).WithAttrs([]slog.Attr{slog.String("component", "proxy")})
	l := slog.New(h)
	const goroutines, lines = 8, 200
	done := make(chan struct{})
	for g := range goroutines {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range lines {
				if (g+i)%2 == 0 {
					l.Info("other", "i", i)
				} else {
					d := decisions()[0]
					_ = d.Log(context.Background(), h, slog.LevelInfo)
				}
			}
		}()
	}
	for range goroutines {
		<-done
	}
	n := 0
	for line := range strings.Lines(out.String()) {
		if !strings.HasPrefix(line, `{"time":"`) || !strings.HasSuffix(line, "}\n") || strings.Count(line, "{") != 1 {
			t.Fatalf("line cut or mixed: %q", line)
		}
		n++
	}
	if n != goroutines*lines {
		t.Fatalf("%d lines, want %d", n, goroutines*lines)
	}
}

// The fast path and slog write the same bytes for any values, any time,
// any carried attribute and group.
func FuzzDecisionLineEqualsSlog(f *testing.F) {
	f.Add("sbx_1", "ten_1", "GET", "api.test", "/v1/models", 200, "substituted", "", 1, 0, 0, int64(1234567),
		int64(1765124229123456789), 0, false, "component", "proxy", "", false)
	f.Add(hostile, hostile, hostile, hostile, hostile, -1, hostile, hostile, -1, 1<<40, 3, int64(-1),
		int64(-1), -3600*5-1, true, hostile, hostile, hostile, true)
	f.Add("", "", "", "", "\xff", 0, "", "", 0, 0, 0, int64(0), int64(0), 59, true, "", "", "a b", true)
	f.Fuzz(func(t *testing.T, sandbox, tenant, method, host, path string, status int, outcome, reason string,
		substituted, left, leaks int, dur, unixNano int64, zone int, text bool, key, val, group string, warn bool) {
		d := Decision{Sandbox: sandbox, Tenant: tenant, Method: method, Host: host, Path: path, Status: status,
			Outcome: outcome, Reason: reason, Substituted: substituted, Left: left, Leaks: leaks, Duration: time.Duration(dur)}
		tm := time.Unix(0, unixNano).In(time.FixedZone("z", zone%(24*3600)))
		format, level := JSON, slog.LevelInfo
		if text {
			format = Text
		}
		if warn {
			level = slog.LevelWarn
		}
		ch := chain{"fuzzed", func(h slog.Handler) slog.Handler {
			h = h.WithAttrs([]slog.Attr{slog.String("component", "proxy"), slog.String(key, val)})
			if group != "" {
				h = h.WithGroup(group).WithAttrs([]slog.Attr{slog.String(val, key)}).WithGroup(group)
			}
			return h
		}}
		ref, h, refOut, out := both(format, nil, ch)
		now := func() time.Time { return tm }
		if err := d.logAt(context.Background(), ref, level, now); err != nil {
			t.Fatal(err)
		}
		if err := d.logAt(context.Background(), h, level, now); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out.Bytes(), refOut.Bytes()) {
			t.Fatalf("\n got %q\nwant %q", out, refOut)
		}
		if h.(*Handler).frames[0] == nil {
			t.Fatal("no frame: the line went through slog")
		}
	})
}

// The decision line as serve writes it (to nowhere here), through slog's
// handler (before) and through the fast path.
func BenchmarkDecisionLine(b *testing.B) {
	d := decisions()[0]
	for _, format := range []Format{JSON, Text} {
		name := map[Format]string{JSON: "json", Text: "text"}[format]
		for _, path := range []string{"slog", "fast"} {
			b.Run(name+"/"+path, func(b *testing.B) {
				var h slog.Handler = NewHandler(io.Discard, nil, format)
				if path == "slog" {
					h = slog.NewJSONHandler(io.Discard, nil)
					if format == Text {
						h = slog.NewTextHandler(io.Discard, nil)
					}
				}
				h = h.WithAttrs([]slog.Attr{slog.String("component", "proxy")})
				ctx := context.Background()
				b.ReportAllocs()
				for b.Loop() {
					_ = d.Log(ctx, h, slog.LevelInfo)
				}
			})
		}
	}
}
