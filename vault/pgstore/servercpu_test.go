package pgstore

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// serverCPU reads the CPU time of the PostgreSQL server s is connected to
// from /proc, when it runs on this machine: its postmaster's own, that of
// its children that exited (and were waited for) and that of its live
// children (backends, autovacuum, the WAL writer and checkpointer). ok is
// false when the server is elsewhere or /proc is not readable.
func serverCPU(tb testing.TB, s *Store) (cpu time.Duration, ok bool) {
	tb.Helper()
	var backend int
	if err := s.pool.QueryRow(context.Background(), "SELECT pg_backend_pid()").Scan(&backend); err != nil {
		tb.Fatal(err)
	}
	f, err := procStat(backend)
	if err != nil {
		return 0, false
	}
	postmaster := f[1] // ppid
	pm, err := procStat(mustAtoi(postmaster))
	if err != nil {
		return 0, false
	}
	ticks := atoi(pm[11]) + atoi(pm[12]) + atoi(pm[13]) + atoi(pm[14]) // utime stime cutime cstime
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		return 0, false
	}
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		c, err := procStat(pid)
		if err != nil || c[1] != postmaster {
			continue
		}
		ticks += atoi(c[11]) + atoi(c[12])
	}
	// USER_HZ is 100 on every Linux this runs on.
	return time.Duration(ticks) * (time.Second / 100), true
}

// procStat returns the fields of /proc/PID/stat after the command's name:
// [0] state, [1] ppid, ..., [11] utime, [12] stime, [13] cutime, [14] cstime.
func procStat(pid int) ([]string, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil, err
	}
	s := string(b)
	return strings.Fields(s[strings.LastIndexByte(s, ')')+1:]), nil
}

func atoi(s string) int64 {
	n, _ := strconv.ParseInt(s, 10, 64)
	return n
}

func mustAtoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}
