package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/egressd/egressd/oauth"
	"github.com/egressd/egressd/resolver"
	"github.com/egressd/egressd/vault"
)

// ErrBadRequest is input the API cannot take: malformed JSON, an unknown
// field or query parameter, trailing data, a bad path parameter.
var ErrBadRequest = errors.New("bad request")

// ErrUnauthorized is a request without a bearer token, or with one that
// matches no live key.
var ErrUnauthorized = errors.New("unauthorized")

// ErrForbidden is a request whose key may not call this endpoint: a write
// with a browser token, anything but tenant creation and source_prefixes
// with the operator key, those with any other key, or a tenant key
// setting its own source_prefixes.
var ErrForbidden = errors.New("forbidden")

// ErrNotFound is an id the caller's tenant does not have, or a route that
// does not exist. Another tenant's ids are reported the same way.
var ErrNotFound = errors.New("not found")

// ErrMethodNotAllowed is a known route called with the wrong method.
var ErrMethodNotAllowed = errors.New("method not allowed")

// ErrTooLarge is a request body over MaxBodyBytes.
var ErrTooLarge = errors.New("request body too large")

// ErrNotImplemented is an endpoint this server was built without (the
// OAuth endpoints when no OAuth service is configured).
var ErrNotImplemented = errors.New("not implemented")

// ErrInternal is anything the caller cannot fix. Its answer carries a
// generic message; the cause goes to the log only.
var ErrInternal = errors.New("internal error")

// errorBody is the JSON shape of every error answer.
type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// classify maps an error to its HTTP status and code. It is the one place
// that decides what a failure looks like on the wire.
func classify(err error) (status int, code string) {
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig), errors.Is(err, ErrTooLarge):
		return http.StatusRequestEntityTooLarge, "payload_too_large"
	case errors.Is(err, ErrUnauthorized), errors.Is(err, vault.ErrUnauthenticated):
		return http.StatusUnauthorized, "unauthorized"
	case errors.Is(err, ErrForbidden), errors.Is(err, vault.ErrForbidden):
		return http.StatusForbidden, "forbidden"
	case errors.Is(err, ErrNotFound), errors.Is(err, vault.ErrNotFound), errors.Is(err, resolver.ErrUnknownSandbox):
		return http.StatusNotFound, "not_found"
	case errors.Is(err, ErrNotImplemented):
		return http.StatusNotImplemented, "not_implemented"
	case errors.Is(err, oauth.ErrUnknownProvider):
		return http.StatusNotFound, "unknown_provider"
	case errors.Is(err, oauth.ErrNotConfigured):
		return http.StatusConflict, "provider_not_configured"
	case errors.Is(err, vault.ErrWrongBrowser):
		return http.StatusForbidden, "oauth_wrong_browser"
	case errors.Is(err, vault.ErrWrongUser):
		return http.StatusForbidden, "oauth_wrong_user"
	case errors.Is(err, vault.ErrConnectOpened):
		return http.StatusConflict, "oauth_connect_opened"
	case errors.Is(err, vault.ErrStateUsed):
		return http.StatusConflict, "oauth_state_used"
	case errors.Is(err, vault.ErrStateExpired):
		return http.StatusBadRequest, "oauth_state_expired"
	case errors.Is(err, vault.ErrUnknownState):
		return http.StatusBadRequest, "oauth_unknown_state"
	case errors.Is(err, oauth.ErrExchange):
		return http.StatusBadGateway, "oauth_exchange_failed"
	case errors.Is(err, oauth.ErrInvalid):
		return http.StatusBadRequest, "invalid_request"
	case errors.Is(err, oauth.ErrTooManyWaiters):
		return http.StatusTooManyRequests, "too_many_waiters"
	case errors.Is(err, ErrRateLimited):
		return http.StatusTooManyRequests, "rate_limited"
	case errors.Is(err, ErrMethodNotAllowed):
		return http.StatusMethodNotAllowed, "method_not_allowed"
	case errors.Is(err, vault.ErrConflict):
		return http.StatusConflict, "conflict"
	case errors.Is(err, ErrBadRequest), errors.Is(err, vault.ErrInvalid):
		return http.StatusBadRequest, "invalid_request"
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable, "unavailable"
	case errors.Is(err, vault.ErrMasterKeyNotHeld):
		return http.StatusServiceUnavailable, "master_key_unavailable"
	}
	return http.StatusInternalServerError, "internal"
}

// message is what the caller reads: the error's own text, which for
// errors of this package and of the vault names the field or id that is
// wrong. A 5xx gets a generic text; its cause goes to the log only.
func message(err error, status int) string {
	switch {
	case status == http.StatusRequestEntityTooLarge:
		return fmt.Sprintf("request body exceeds %d bytes", MaxBodyBytes)
	case errors.Is(err, vault.ErrMasterKeyNotHeld):
		return "this replica does not hold the master key the vault was rekeyed to (its /readyz says so); another replica can serve this"
	case status == http.StatusServiceUnavailable:
		return "request canceled"
	case status == http.StatusNotImplemented, status == http.StatusBadGateway:
		return err.Error()
	case status >= 500:
		return "internal error; the server log has the cause"
	}
	return err.Error()
}

// httpError is a refusal of this package: its kind (one of the sentinels
// above) decides the status, its text is the message.
type httpError struct {
	kind error
	msg  string
}

func (e *httpError) Error() string { return e.msg }
func (e *httpError) Unwrap() error { return e.kind }

// errorf makes a refusal of kind with a message for the caller.
func errorf(kind error, format string, args ...any) error {
	return &httpError{kind: kind, msg: fmt.Sprintf(format, args...)}
}

// redacted is an error whose text had input values cut out.
type redacted struct {
	err error
	msg string
}

func (e *redacted) Error() string { return e.msg }
func (e *redacted) Unwrap() error { return e.err }

// redact cuts the given input values out of err's text. A value sent in
// the wrong field (a scope, a host) would otherwise come back quoted in the
// refusal; no message ever carries a value that was sent.
func redact(err error, values ...string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	for _, v := range values {
		if len(v) >= 4 {
			msg = strings.ReplaceAll(msg, v, "[redacted]")
		}
	}
	if msg == err.Error() {
		return err
	}
	return &redacted{err: err, msg: msg}
}

// writeError answers with the JSON error for err. On a *recorder it notes
// the code (and, for a 5xx, the cause) for the request's log line.
func writeError(w http.ResponseWriter, err error) {
	status, code := classify(err)
	if rec, ok := w.(*recorder); ok {
		rec.errCode = code
		if status >= 500 {
			rec.cause = err
		}
		if rec.wrote {
			// The answer has begun; nothing sensible can follow it.
			return
		}
	}
	if status == http.StatusUnauthorized {
		v := `Bearer realm="egressd"`
		if !errors.Is(err, errMissingToken) {
			v += `, error="invalid_token"`
		}
		w.Header().Set("WWW-Authenticate", v)
	}
	writeJSON(w, status, errorBody{Error: errorDetail{Code: code, Message: message(err, status)}})
}

// errMissingToken is the 401 of a request without any bearer token.
var errMissingToken = errorf(ErrUnauthorized, "missing bearer token (Authorization: Bearer <api key>)")
