package resolver

import "errors"

// ErrNoSecret is returned by Resolve when no level of the walk yields an
// enabled, allowed secret of that name for the sandbox.
var ErrNoSecret = errors.New("no secret of that name resolves for this sandbox")

// ErrUnknownSandbox is returned when the sandbox does not exist (or no
// longer does).
var ErrUnknownSandbox = errors.New("unknown sandbox")
