package certs

import "errors"

// ErrCAIncomplete means that exactly one of the two CA files (ca.pem and
// ca-key.pem) exists in the data directory. The package will neither create
// the missing half (it would not match) nor replace the present one (it may
// be the CA that sandboxes already trust): the operator restores the missing
// file, or removes the other one to start a new CA.
var ErrCAIncomplete = errors.New("certs: CA files incomplete")

// ErrInvalidCA means that a CA file cannot be used: it holds no PEM block of
// the expected type, does not parse, holds an unsupported key type, or the
// certificate is not marked as a CA allowed to sign certificates.
var ErrInvalidCA = errors.New("certs: invalid CA")

// ErrKeyMismatch means that the CA private key is not the key of the CA
// certificate beside it, so leaves it signs would not verify against it.
var ErrKeyMismatch = errors.New("certs: CA key does not match CA certificate")

// ErrCAExpired means that the CA certificate is past its NotAfter date. Leaves
// it signed would be refused by every client; a new CA must be created and
// distributed.
var ErrCAExpired = errors.New("certs: CA certificate expired")

// ErrInvalidHost means that a host handed to the leaf cache is empty or not a
// syntactically valid DNS name or IP literal (with an optional port), so no
// certificate is minted for it.
var ErrInvalidHost = errors.New("certs: invalid host")

// ErrInvalidConfig means that NewLeafCache was given a configuration it
// cannot work with: no CA, a negative size, or a validity outside the bounds
// documented on LeafConfig.
var ErrInvalidConfig = errors.New("certs: invalid leaf cache config")
