package vault

import (
	"sort"
	"strings"
	"unicode/utf8"
)

// The keys of an OAuth override's branding, shown on the tenant's Connect
// page. Any other key is refused.
const (
	// BrandingButtonLabel is the Connect button's text: plain text, 1 to
	// MaxButtonLabel characters, no control or bidirectional formatting
	// characters. Empty means "Connect <provider>".
	BrandingButtonLabel = "button_label"
	// BrandingPrimaryColor is the page's accent colour, #rrggbb.
	BrandingPrimaryColor = "primary_color"
)

// MaxButtonLabel is the longest button_label, in characters.
const MaxButtonLabel = 64

// BrandingKeys are the accepted branding keys, sorted.
var BrandingKeys = []string{BrandingButtonLabel, BrandingPrimaryColor}

// checkBranding refuses a branding map with an unknown key or a value its
// key does not take; the error names the key (branding.<key>).
func checkBranding(m map[string]string) error {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys) // the same input always names the same key
	for _, k := range keys {
		v := m[k]
		switch k {
		case BrandingButtonLabel:
			if !ValidButtonLabel(v) {
				return invalid("branding.button_label", "plain text of 1 to %d characters, not blank, without control or bidirectional formatting characters", MaxButtonLabel)
			}
		case BrandingPrimaryColor:
			if !ValidColor(v) {
				return invalid("branding.primary_color", "want a colour as #rrggbb (six hex digits)")
			}
		default:
			return invalid("branding", "unknown key %q (want %s)", printableKey(k), strings.Join(BrandingKeys, " or "))
		}
	}
	return nil
}

// ValidButtonLabel reports whether s can be a Connect button's label.
func ValidButtonLabel(s string) bool {
	if !utf8.ValidString(s) || strings.TrimSpace(s) == "" || utf8.RuneCountInString(s) > MaxButtonLabel {
		return false
	}
	for _, r := range s {
		if unsafeRune(r) || r == utf8.RuneError {
			return false
		}
	}
	return true
}

// ValidColor reports whether s is a colour as #rrggbb.
func ValidColor(s string) bool {
	if len(s) != 7 || s[0] != '#' {
		return false
	}
	for i := 1; i < 7; i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// printableKey is an unknown key as an error may quote it: cut short and
// valid UTF-8 (%q escapes the rest).
func printableKey(k string) string {
	if len(k) > MaxMetadataKey {
		k = k[:MaxMetadataKey]
	}
	return strings.ToValidUTF8(k, "?")
}
