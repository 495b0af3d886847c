package oauth

import "errors"

// ErrUnknownProvider is a provider name that is neither built in nor in
// the providers file.
var ErrUnknownProvider = errors.New("unknown oauth provider")

// ErrNotConfigured is a provider without a client id: neither the
// operator's providers file nor a tenant override gives one.
var ErrNotConfigured = errors.New("oauth provider has no client configured")

// ErrInvalid is a connect, complete or override request the flow cannot
// take (a bad field); its message names the field.
var ErrInvalid = errors.New("invalid oauth request")

// ErrExchange is a provider that refused or failed the code exchange; the
// flow is failed and nothing is stored.
var ErrExchange = errors.New("oauth code exchange failed")

// ErrRefresh is a token refresh that could not be done: no refresh token,
// an unknown provider, or the provider refused.
var ErrRefresh = errors.New("oauth token refresh failed")

// ErrBadProvidersFile is a providers file that cannot be used.
var ErrBadProvidersFile = errors.New("bad oauth providers file")

// ErrTooManyWaiters is a flow long-poll refused because MaxWaiters polls
// are waiting already; the caller retries later.
var ErrTooManyWaiters = errors.New("too many oauth flow polls waiting")
