package config

import "runtime/debug"

// DefaultGCPercent is the garbage collector's target serve sets when the
// operator has not set GOGC: the heap may grow to three times what is live
// before a collection, instead of Go's twice.
//
// Why 200 (docs/benchmarks.md): at 50 busy clients the proxy's live heap
// is about 8 MiB, and at Go's default the collector ran every 290
// requests, its marking, assists and sweeping about 9% of the proxy's CPU;
// at 200 about 4%, for 32 MiB of anonymous memory against 21 MiB (at 300:
// 3.6%, 44 MiB).
const DefaultGCPercent = 200

// TuneGC sets the collector's target to DefaultGCPercent unless GOGC is
// set in the environment (getenv), which the runtime has then applied.
// It reports the percent in force, -1 when GOGC decides.
func TuneGC(getenv func(string) string) int {
	if getenv("GOGC") != "" {
		return -1
	}
	debug.SetGCPercent(DefaultGCPercent)
	return DefaultGCPercent
}
