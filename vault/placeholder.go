package vault

import (
	"fmt"
	"strings"

	"github.com/egressd/egressd/vault/storage"
)

// PlaceholderMarker starts the unique part of every placeholder. Its first
// byte is rare in text (an upper-case letter), so a scanner's bytes.Index
// for it runs at memchr speed over bodies without placeholders.
const PlaceholderMarker = "EGP_"

// PlaceholderTailLen is the fixed number of [A-Za-z0-9] characters after
// the marker (about 190 bits).
const PlaceholderTailLen = 32

// PlaceholderCoreLen is the length of marker plus tail: the part of a
// placeholder that identifies it.
const PlaceholderCoreLen = len(PlaceholderMarker) + PlaceholderTailLen

// MaxPlaceholderPrefix is the longest placeholder_prefix accepted.
const MaxPlaceholderPrefix = 32

func newPlaceholderCore() string { return PlaceholderMarker + randomAlnum(PlaceholderTailLen) }

// PlaceholderCoreAt reports whether b[i:] starts with a well-formed
// placeholder core (marker and a full tail of [A-Za-z0-9]).
func PlaceholderCoreAt(b []byte, i int) bool {
	if i < 0 || len(b)-i < PlaceholderCoreLen || string(b[i:i+len(PlaceholderMarker)]) != PlaceholderMarker {
		return false
	}
	for _, c := range b[i+len(PlaceholderMarker) : i+PlaceholderCoreLen] {
		if !isAlnum(c) {
			return false
		}
	}
	return true
}

// PlaceholderCore returns the core of a whole placeholder text (its prefix
// dropped), or "" if text holds none.
func PlaceholderCore(text string) string {
	i := strings.Index(text, PlaceholderMarker)
	if i < 0 || !PlaceholderCoreAt([]byte(text), i) {
		return ""
	}
	return text[i : i+PlaceholderCoreLen]
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// EnsurePlaceholders returns the placeholder of each name for the sandbox,
// issuing and storing one where the sandbox has none yet. prefixes maps each
// name to the placeholder_prefix a new placeholder starts with. An issued
// placeholder never changes, whatever happens to the secret behind it.
func (s *Store) EnsurePlaceholders(tenantID, sandboxID string, prefixes map[string]string) (map[string]string, error) {
	out := make(map[string]string, len(prefixes))
	// Most calls find every placeholder issued: read first, write only if not.
	missing := false
	err := s.view(func(tx storage.Tx) error {
		if _, err := txSandbox(tx, tenantID, sandboxID); err != nil {
			return err
		}
		for name := range prefixes {
			if v := tx.Bucket(bSandboxPH).Get(key(sandboxID, name)); v != nil {
				out[name] = string(v)
			} else {
				missing = true
			}
		}
		return nil
	})
	if err != nil || !missing {
		return out, err
	}
	err = s.update(tenantID, func(tx storage.Tx) error {
		if _, err := txSandbox(tx, tenantID, sandboxID); err != nil {
			return err
		}
		for name, pre := range prefixes {
			if !ValidName(name) || !validPlaceholderPrefix(pre) {
				return invalid("name", "bad placeholder request for %q", name)
			}
			k := key(sandboxID, name)
			if v := tx.Bucket(bSandboxPH).Get(k); v != nil {
				out[name] = string(v)
				continue
			}
			core := newPlaceholderCore()
			text := pre + core
			p := Placeholder{Text: text, TenantID: tenantID, SandboxID: sandboxID, Name: name}
			if err := putJSON(tx.Bucket(bPlaceholders), []byte(core), &p); err != nil {
				return err
			}
			if err := tx.Bucket(bSandboxPH).Put(k, []byte(text)); err != nil {
				return err
			}
			out[name] = text
		}
		return nil
	})
	return out, err
}

// LookupPlaceholder finds who a placeholder was issued to, by its core
// (marker and tail) or its whole text.
func (s *Store) LookupPlaceholder(text string) (Placeholder, error) {
	core := PlaceholderCore(text)
	var p Placeholder
	if core == "" {
		return p, fmt.Errorf("placeholder: %w", ErrNotFound)
	}
	err := s.view(func(tx storage.Tx) error {
		ok, err := getJSON(tx.Bucket(bPlaceholders), []byte(core), &p)
		if err == nil && !ok {
			err = fmt.Errorf("placeholder: %w", ErrNotFound)
		}
		return err
	})
	return p, err
}
