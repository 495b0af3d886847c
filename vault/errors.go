package vault

import (
	"errors"
	"fmt"

	"github.com/egressd/egressd/audit"
)

// ErrNotFound is returned when a record does not exist in the caller's tenant.
// A record of another tenant is reported the same way, so ids do not leak.
var ErrNotFound = errors.New("not found")

// ErrInvalid is returned for input that fails validation. The concrete error
// is a *ValidationError naming the field (an *audit.ValidationError for an
// audit row or filter). It is audit.ErrInvalid, so input the audit log
// refuses is ErrInvalid here too.
var ErrInvalid = audit.ErrInvalid

// ErrConflict is returned when a write collides with an existing record.
var ErrConflict = errors.New("conflict")

// ErrForbidden is returned when a tenant setting forbids the write, for
// example an external_user secret while allow_end_user_credentials is off.
var ErrForbidden = errors.New("forbidden")

// ErrWrongMasterKey is returned by Open and Rekey when the master key does
// not open the vault's data keys.
var ErrWrongMasterKey = errors.New("master key does not open this vault")

// ErrAlreadyRekeyed is returned by RekeyStore when the vault is sealed by
// the new key already (a rekey that ran before): nothing changes.
var ErrAlreadyRekeyed = errors.New("the vault is sealed by the new master key already")

// ErrReplicaLacksKey is an online rekey refused because a replica serving
// the store announced that it does not hold the new master key: it would
// fail closed as the rekey commits.
var ErrReplicaLacksKey = errors.New("a serving replica does not hold the new master key")

// ErrMasterKeyNotHeld is returned by a write that seals a value, and by
// opening a value, when the vault (a store shared by several replicas) was
// rekeyed to a master key this process was not given (keyring.go). It is
// an ErrWrongMasterKey.
var ErrMasterKeyNotHeld = fmt.Errorf("%w: this process does not hold the key it is sealed by now", ErrWrongMasterKey)

// ErrLocked is returned by Open when another process holds the vault file.
var ErrLocked = errors.New("vault file is locked by another process (is egressd serve running? stop it first)")

// ErrClosed is returned by AppendAudit once the store is closed: it is
// audit.ErrClosed.
var ErrClosed = audit.ErrClosed

// ErrAuditUnavailable is returned by AppendAudit when the node refuses
// new request rows: the audit rows it journaled cannot be shipped to the
// store and as many wait as it may hold (Config.AuditSpoolMax). The proxy
// answers 503 audit_unavailable rather than send a credential it cannot
// record. It is audit.ErrUnavailable.
var ErrAuditUnavailable = audit.ErrUnavailable

// ErrUnauthenticated is returned when a token matches no live key.
var ErrUnauthenticated = errors.New("unknown or expired token")

// ErrTokenExpired is returned, wrapping ErrUnauthenticated, when a
// sandbox's proxy token was right but its token_ttl has passed.
var ErrTokenExpired = fmt.Errorf("proxy token expired: %w", ErrUnauthenticated)

// ErrDecrypt is returned when a stored value fails to open: it was copied
// from another record, or the file was tampered with.
var ErrDecrypt = errors.New("stored value failed authentication")

// ErrStoreNotEmpty is returned by CopyStore when the target holds keys
// already: a copy goes into an empty store only, never over another vault.
var ErrStoreNotEmpty = errors.New("the target store is not empty")

// ErrBadMasterKey is returned when a master key file or variable cannot be parsed.
var ErrBadMasterKey = errors.New("malformed master key")

// ValidationError says which input field was refused and why. It wraps
// ErrInvalid (or ErrForbidden for a refusal by tenant setting, or
// ErrNotFound for a reference to a record the tenant does not have).
type ValidationError struct {
	Field   string
	Message string
	kind    error
}

func (e *ValidationError) Error() string {
	if e.Field == "" {
		return e.Message
	}
	return fmt.Sprintf("%s: %s", e.Field, e.Message)
}

func (e *ValidationError) Unwrap() error {
	if e.kind != nil {
		return e.kind
	}
	return ErrInvalid
}

func invalid(field, format string, args ...any) error {
	return &ValidationError{Field: field, Message: fmt.Sprintf(format, args...)}
}

func forbidden(field, format string, args ...any) error {
	return &ValidationError{Field: field, Message: fmt.Sprintf(format, args...), kind: ErrForbidden}
}

func notFound(field, format string, args ...any) error {
	return &ValidationError{Field: field, Message: fmt.Sprintf(format, args...), kind: ErrNotFound}
}
