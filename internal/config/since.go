package config

import (
	"errors"
	"strconv"
	"strings"
	"time"
)

// ParseSince reads a point in time as the audit filters take it: a
// duration back from now (Go's form such as 90m or 12h, or whole days such
// as 7d or 30d) or an RFC 3339 time.
func ParseSince(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n < 0 || n > 100*365 {
			return time.Time{}, errors.New("want a duration such as 7d, 90m or 12h, or an RFC 3339 time")
		}
		return now.Add(-time.Duration(n) * 24 * time.Hour), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return time.Time{}, errors.New("want a duration such as 7d, 90m or 12h, or an RFC 3339 time")
	}
	return now.Add(-d), nil
}
