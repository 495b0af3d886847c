package main

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// selfStats reads this process's CPU time (getrusage, user + system, all
// threads) and its peak and current RSS (/proc/self/status VmHWM, VmRSS).
func selfStats() procStats {
	var s procStats
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		s.User = time.Duration(ru.Utime.Nano())
		s.System = time.Duration(ru.Stime.Nano())
		s.CPU = s.User + s.System
		s.HWMKiB = ru.Maxrss // KiB on Linux; VmHWM below is preferred
	}
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return s
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			continue
		}
		switch k {
		case "VmHWM":
			s.HWMKiB = n
		case "VmRSS":
			s.RSSKiB = n
		}
	}
	return s
}
