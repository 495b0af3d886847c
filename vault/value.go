package vault

import (
	"crypto/subtle"
	"fmt"
	"log/slog"
)

const redacted = "[redacted]"

// Value is a secret's plaintext. It prints, logs and marshals as
// "[redacted]"; only Reveal gives the bytes, for the one place that must
// put them on the wire. The bytes are reachable only through a func, which
// fmt never looks into, so even a Value reached through an unexported
// struct field (where fmt calls none of its methods) prints no plaintext.
type Value struct{ b func() []byte }

// NewValue wraps b. The Value owns b from then on.
func NewValue(b []byte) Value { return Value{b: func() []byte { return b }} }

// Reveal returns the plaintext. Never log it, return it from an API, or
// put it in an error.
func (v Value) Reveal() []byte {
	if v.b == nil {
		return nil
	}
	return v.b()
}

// Len is the plaintext's length.
func (v Value) Len() int { return len(v.Reveal()) }

// IsZero reports whether v holds nothing.
func (v Value) IsZero() bool { return v.Len() == 0 }

// Equal compares with b in constant time.
func (v Value) Equal(b []byte) bool { return subtle.ConstantTimeCompare(v.Reveal(), b) == 1 }

// String redacts.
func (v Value) String() string { return redacted }

// GoString redacts.
func (v Value) GoString() string { return redacted }

// Format redacts for every verb.
func (v Value) Format(f fmt.State, _ rune) { f.Write([]byte(redacted)) }

// LogValue redacts.
func (v Value) LogValue() slog.Value { return slog.StringValue(redacted) }

// MarshalJSON redacts.
func (v Value) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }

// MarshalText redacts.
func (v Value) MarshalText() ([]byte, error) { return []byte(redacted), nil }
