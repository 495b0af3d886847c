package config

import (
	"runtime/debug"
	"testing"
)

// Without GOGC serve runs the collector at DefaultGCPercent; an operator's
// GOGC is left as the runtime applied it.
func TestTuneGC(t *testing.T) {
	prev := debug.SetGCPercent(100)
	defer debug.SetGCPercent(prev)
	if got := TuneGC(func(string) string { return "" }); got != DefaultGCPercent {
		t.Fatalf("TuneGC without GOGC: %d", got)
	}
	if now := debug.SetGCPercent(100); now != DefaultGCPercent {
		t.Fatalf("GC percent %d, want %d", now, DefaultGCPercent)
	}
	env := map[string]string{"GOGC": "100"}
	if got := TuneGC(func(k string) string { return env[k] }); got != -1 {
		t.Fatalf("TuneGC with GOGC set: %d", got)
	}
	if now := debug.SetGCPercent(100); now != 100 {
		t.Fatalf("GOGC=100 overridden: percent %d", now)
	}
}
