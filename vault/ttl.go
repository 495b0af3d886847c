package vault

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Bounds of a proxy token's lifetime.
const (
	MinTokenTTL = time.Minute
	MaxTokenTTL = 366 * 24 * time.Hour
)

// TTL is a lifetime given in JSON as a duration string ("90m", "24h",
// "7d") or a whole number of seconds. Zero means none.
type TTL time.Duration

// UnmarshalJSON reads "90m", "7d" or 5400.
func (t *TTL) UnmarshalJSON(b []byte) error {
	if bytes.Equal(b, []byte("null")) {
		*t = 0
		return nil
	}
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		d, err := ParseTTL(s)
		if err != nil {
			return invalid("token_ttl", "%v", err)
		}
		*t = TTL(d)
		return nil
	}
	n, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil || n < 0 || n > int64(MaxTokenTTL/time.Second) {
		return invalid("token_ttl", "want a duration such as \"24h\" or \"7d\", or whole seconds")
	}
	*t = TTL(time.Duration(n) * time.Second)
	return nil
}

// MarshalJSON writes the duration string.
func (t TTL) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(t).String()) }

// ParseTTL reads a Go duration ("90m", "24h") or a number of days ("7d").
func ParseTTL(s string) (time.Duration, error) {
	if len(s) > 32 {
		return 0, fmt.Errorf("want a duration such as \"24h\" or \"7d\"")
	}
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n < 0 || n > int(MaxTokenTTL/(24*time.Hour)) {
			return 0, fmt.Errorf("want a duration such as \"24h\" or \"7d\"")
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("want a duration such as \"24h\" or \"7d\"")
	}
	return d, nil
}

// checkTokenTTL refuses a lifetime outside the bounds; zero is no expiry.
func checkTokenTTL(t TTL) error {
	d := time.Duration(t)
	if d != 0 && (d < MinTokenTTL || d > MaxTokenTTL) {
		return invalid("token_ttl", "between %s and %dd, or absent for a token that does not expire", MinTokenTTL, int(MaxTokenTTL/(24*time.Hour)))
	}
	return nil
}
