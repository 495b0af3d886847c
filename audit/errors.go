package audit

import (
	"errors"
	"fmt"
)

// ErrInvalid is returned for a row, filter or argument that fails
// validation. The concrete error is a *ValidationError naming the field.
// vault.ErrInvalid is this error, so the vault's callers see one kind of
// refused input.
var ErrInvalid = errors.New("invalid input")

// ErrUnavailable is returned by Append when the node refuses new request
// rows: the rows it journaled cannot be shipped to the store and as many
// wait as it may hold (Config.SpoolMax). The proxy answers 503
// audit_unavailable rather than send a credential it cannot record.
var ErrUnavailable = errors.New("audit log unavailable")

// ErrClosed is returned by Append once the log is closed.
var ErrClosed = errors.New("vault is closed")

// ValidationError says which field of a row or filter was refused and
// why. It wraps ErrInvalid.
type ValidationError struct {
	Field   string
	Message string
}

func (e *ValidationError) Error() string {
	if e.Field == "" {
		return e.Message
	}
	return fmt.Sprintf("%s: %s", e.Field, e.Message)
}

func (e *ValidationError) Unwrap() error { return ErrInvalid }

func invalid(field, format string, args ...any) error {
	return &ValidationError{Field: field, Message: fmt.Sprintf(format, args...)}
}
