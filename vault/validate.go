package vault

import (
	"net/netip"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits on input.
const (
	MaxNameLen       = 128
	MaxIDLen         = 128
	MaxValueLen      = 64 << 10
	MaxMetadata      = 32
	MaxMetadataKey   = 64
	MaxMetadataValue = 1024
	MaxAllowedHosts  = 64
	MaxTenantName    = 128
)

// ValidName reports whether s is a secret name: [A-Za-z0-9_.-]{1,128}.
func ValidName(s string) bool {
	if len(s) == 0 || len(s) > MaxNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isAlnum(c) && c != '_' && c != '.' && c != '-' {
			return false
		}
	}
	return true
}

// validExternalID accepts the ids a platform stamps: UTF-8 of at most 128
// bytes without unsafeRune (so no separator we use in keys either).
func validExternalID(s string) bool {
	return len(s) <= MaxIDLen && validText(s)
}

// idRule is how a refusal by validExternalID reads.
const idRule = "at most %d bytes of UTF-8, without control, format (bidirectional, zero-width) or line separator characters"

// validText reports whether s is UTF-8 without unsafeRune.
func validText(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsFunc(s, unsafeRune)
}

// unsafeRune reports the characters an id or a name may not hold, since
// they make it read or split differently from what it is, in a dashboard, a
// log line or an exported audit file:
//   - controls (Cc): C0, DEL and C1, NEL (U+0085) among them;
//   - format characters (Cf): the bidirectional marks, embeddings,
//     overrides and isolates (U+200E, U+200F, U+202A–U+202E,
//     U+2066–U+2069, U+061C), zero-width spaces and joiners
//     (U+200B–U+200D, U+2060, U+FEFF), soft hyphen, invisible operators,
//     interlinear annotations and tag characters;
//   - the line and paragraph separators (Zl U+2028, Zp U+2029).
func unsafeRune(r rune) bool {
	return unicode.IsControl(r) || unicode.In(r, unicode.Cf, unicode.Zl, unicode.Zp)
}

// maxEnvNameLen leaves room for the '_' that EnvNameFor puts before a
// longest name that starts with a digit.
const maxEnvNameLen = MaxNameLen + 1

// ValidEnvName reports whether s is a usable environment variable name.
func ValidEnvName(s string) bool {
	if len(s) == 0 || len(s) > maxEnvNameLen || s[0] >= '0' && s[0] <= '9' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isAlnum(c) && c != '_' {
			return false
		}
	}
	return true
}

// EnvNameFor derives the env var of a secret name that sets no expose_as_env:
// upper case, with '.' and '-' as '_'.
func EnvNameFor(name string) string {
	b := []byte(strings.ToUpper(name))
	for i, c := range b {
		if c == '.' || c == '-' {
			b[i] = '_'
		}
	}
	if len(b) > 0 && b[0] >= '0' && b[0] <= '9' {
		return "_" + string(b)
	}
	return string(b)
}

// NormalizeHostPattern checks an allowed_hosts entry: an exact host name, an
// IP address, or "*.suffix". It returns the lower-cased form, without the
// trailing dot of a fully qualified name. A name whose last label is a
// number ("1.2.3", "*.0.0.1") is refused: resolvers read it as an address.
func NormalizeHostPattern(p string) (string, bool) {
	p = strings.ToLower(strings.TrimSpace(p))
	p = strings.TrimSuffix(p, ".")
	if p == "" || len(p) > 253 {
		return "", false
	}
	if ip, err := netip.ParseAddr(p); err == nil && !strings.Contains(p, "%") {
		return ip.String(), true
	}
	host := strings.TrimPrefix(p, "*.")
	labels := strings.Split(host, ".")
	if strings.HasPrefix(p, "*.") && len(labels) < 2 {
		return "", false
	}
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return "", false
		}
		for i := 0; i < len(l); i++ {
			if c := l[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return "", false
			}
		}
	}
	if allDigits(labels[len(labels)-1]) {
		return "", false
	}
	return p, true
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// HostAllowed reports whether host matches one of patterns (as returned by
// NormalizeHostPattern, or AnyHost); no patterns means no host. An IP
// address host is compared in its canonical form (brackets, zero runs and
// case do not matter), and never matches a "*.suffix" pattern; AnyHost
// matches every host.
func HostAllowed(patterns []string, host string) bool {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	isIP := false
	// Only a name that could be an address is parsed as one (a name
	// parsed in vain allocates its error, on every request).
	if host != "" && ('0' <= host[0] && host[0] <= '9' || strings.ContainsAny(host, ":[")) {
		if ip, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")); err == nil {
			host, isIP = ip.String(), true
		}
	}
	for _, p := range patterns {
		if p == AnyHost {
			if host != "" {
				return true
			}
		} else if suffix, ok := strings.CutPrefix(p, "*"); ok {
			if !isIP && strings.HasSuffix(host, suffix) && len(host) > len(suffix) {
				return true
			}
		} else if host == p {
			return true
		}
	}
	return false
}

func validPlaceholderPrefix(p string) bool {
	if len(p) > MaxPlaceholderPrefix || strings.Contains(p, PlaceholderMarker) {
		return false
	}
	for i := 0; i < len(p); i++ {
		if c := p[i]; !isAlnum(c) && c != '_' && c != '-' && c != '.' {
			return false
		}
	}
	return true
}

func checkMetadata(field string, m map[string]string) error {
	if len(m) > MaxMetadata {
		return invalid(field, "at most %d entries", MaxMetadata)
	}
	for k, v := range m {
		if k == "" || len(k) > MaxMetadataKey || !validText(k) {
			return invalid(field, "keys must be 1 to %d bytes of UTF-8, without control, format (bidirectional, zero-width) or line separator characters", MaxMetadataKey)
		}
		if len(v) > MaxMetadataValue || !utf8.ValidString(v) {
			return invalid(field, "values must be at most %d bytes of UTF-8", MaxMetadataValue)
		}
	}
	return nil
}

func normalizeLocations(in []Location) ([]Location, error) {
	if len(in) == 0 {
		return slices.Clone(DefaultSubstituteIn), nil
	}
	out := make([]Location, 0, len(in))
	for _, l := range in {
		switch l {
		case InHeader, InQuery, InPath, InBody:
		default:
			return nil, invalid("substitute_in", "unknown location %q (want header, query, path or body)", l)
		}
		if !slices.Contains(out, l) {
			out = append(out, l)
		}
	}
	return out, nil
}

func normalizeHosts(field string, in []string) ([]string, error) {
	if len(in) > MaxAllowedHosts {
		return nil, invalid(field, "at most %d entries", MaxAllowedHosts)
	}
	out := make([]string, 0, len(in))
	for _, h := range in {
		n, ok := NormalizeHostPattern(h)
		if !ok {
			return nil, invalid(field, "%q is not a host name, IP address or *.suffix", h)
		}
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out, nil
}
