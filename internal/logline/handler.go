// Package logline is egressd's slog handler: log/slog's own JSON or text
// handler, and beside it a fast path for the decision line written for
// every proxied request (see Decision), whose bytes are those slog's
// handler prints for the same record, at a fraction of the cost.
//
// The fast path encodes only the line's own fields. What the handler
// carries (the attributes and groups of Logger.With and WithGroup) comes
// from slog's handler itself: once per handler and level, the line is
// rendered through it with marker values, and the bytes between the
// markers are kept as the line's frame. The frame is then checked
// against slog's rendering of a line of hostile values; a handler whose
// frame cannot be found, or whose check fails, falls back to slog.
package logline

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"log/slog"
	"sync"
)

// Format is the encoding of a Handler's lines.
type Format int

const (
	// JSON lines, as slog.JSONHandler writes them.
	JSON Format = iota
	// Text lines, as slog.TextHandler writes them.
	Text
)

// Handler is an slog.Handler that hands every record to slog's JSON or
// text handler, and writes the decision line itself (Decision.Log).
// Both write each line with one Write under one mutex, as slog's
// handlers do.
type Handler struct {
	inner slog.Handler // slog's handler, with this handler's attributes and groups
	out   *lineWriter  // shared by every handler derived from one NewHandler
	json  bool
	fast  bool // the options leave the line as the frame renders it (no ReplaceAttr, no AddSource)

	once   sync.Once
	frames [2]*frame // for LevelInfo and LevelWarn; nil: through slog
}

var _ slog.Handler = (*Handler)(nil)

// NewHandler returns a Handler writing lines in format f to w, with
// slog's options opts (nil: slog's defaults). With opts.ReplaceAttr or
// opts.AddSource set, every line goes through slog.
func NewHandler(w io.Writer, opts *slog.HandlerOptions, f Format) *Handler {
	if opts == nil {
		opts = &slog.HandlerOptions{}
	}
	out := &lineWriter{w: w, nonce: []byte(rand.Text())}
	h := &Handler{out: out, json: f == JSON, fast: opts.ReplaceAttr == nil && !opts.AddSource}
	if h.json {
		h.inner = slog.NewJSONHandler(out, opts)
	} else {
		h.inner = slog.NewTextHandler(out, opts)
	}
	return h
}

// Enabled reports whether slog's handler handles records at level.
func (h *Handler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.inner.Enabled(ctx, level)
}

// Handle writes r through slog's handler.
func (h *Handler) Handle(ctx context.Context, r slog.Record) error {
	return h.inner.Handle(ctx, r)
}

// WithAttrs returns a Handler whose lines carry attrs after h's.
func (h *Handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return h.derive(h.inner.WithAttrs(attrs))
}

// WithGroup returns a Handler whose lines' own attributes are in group
// name.
func (h *Handler) WithGroup(name string) slog.Handler {
	return h.derive(h.inner.WithGroup(name))
}

func (h *Handler) derive(inner slog.Handler) *Handler {
	return &Handler{inner: inner, out: h.out, json: h.json, fast: h.fast}
}

// lineWriter writes each line to w under one mutex: slog's handler and
// the fast path write through it, one Write a line. While a frame is
// rendered (capturing), the line holding the nonce is kept instead of
// written.
type lineWriter struct {
	mu        sync.Mutex
	w         io.Writer
	capturing bool
	captured  []byte
	nonce     []byte     // random, never written: marks the lines rendered for a frame
	render    sync.Mutex // one frame rendered at a time
}

func (l *lineWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.capturing && bytes.Contains(p, l.nonce) {
		l.captured = bytes.Clone(p)
		return len(p), nil
	}
	return l.w.Write(p)
}

// capture returns the line h's slog handler writes for r, which must hold
// the nonce; the line is not written. Its caller holds l.render.
func (l *lineWriter) capture(h slog.Handler, r slog.Record) []byte {
	l.mu.Lock()
	l.capturing, l.captured = true, nil
	l.mu.Unlock()
	_ = h.Handle(context.Background(), r)
	l.mu.Lock()
	line := l.captured
	l.capturing, l.captured = false, nil
	l.mu.Unlock()
	return line
}
