package config

import (
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/egressd/egressd/internal/logline"
)

// NewLogger returns a slog logger writing to w at level ("debug", "info",
// "warn", "error", or an offset such as "info+2") in format "json" or
// "text". Empty strings mean info and json. Its lines are slog's JSON or
// text handler's; the proxy's decision line takes logline's fast path to
// the same bytes.
func NewLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if level != "" {
		if err := lv.UnmarshalText([]byte(level)); err != nil {
			return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
		}
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch strings.ToLower(format) {
	case "", "json":
		return slog.New(logline.NewHandler(w, opts, logline.JSON)), nil
	case "text":
		return slog.New(logline.NewHandler(w, opts, logline.Text)), nil
	default:
		return nil, fmt.Errorf("--log-format %q: want json or text", format)
	}
}
