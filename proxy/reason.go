package proxy

// Reason is why the proxy refused a request, or left a placeholder alone.
// The same value names the X-Egress-Denied header, the audit event and the
// metric label.
type Reason uint8

// The reasons.
const (
	ReasonNone Reason = iota
	// ReasonNoCredentials: no Proxy-Authorization.
	ReasonNoCredentials
	// ReasonBadCredentials: unknown sandbox, wrong token, or deleted sandbox.
	ReasonBadCredentials
	// ReasonPrivateAddress: the destination resolves to a denied range.
	ReasonPrivateAddress
	// ReasonOwnListener: the destination is one of egressd's own listeners.
	ReasonOwnListener
	// ReasonHostDenied: the destination is not allowed by the proxy's host rules.
	ReasonHostDenied
	// ReasonUnresolvable: the destination host name does not resolve.
	ReasonUnresolvable
	// ReasonHostNotAllowed: a placeholder's secret may not be used on this host.
	ReasonHostNotAllowed
	// ReasonLocationNotAllowed: a placeholder's secret may not be used in this
	// part of the request (substitute_in).
	ReasonLocationNotAllowed
	// ReasonPlainHTTP: a placeholder in a request that is not TLS.
	ReasonPlainHTTP
	// ReasonHostMismatch: a request inside a tunnel names another host.
	ReasonHostMismatch
	// ReasonTooManyConnections: the sandbox has too many open connections.
	ReasonTooManyConnections
	// ReasonInvalidValue: the value cannot be carried where the placeholder sits
	// (for example a line break in a header).
	ReasonInvalidValue
	// ReasonBadRequest: the request could not be parsed or decoded.
	ReasonBadRequest
	// ReasonResolveError: the vault failed while resolving a placeholder.
	ReasonResolveError
	// ReasonAuditUnavailable: the audit record could not be stored, so no
	// value may leave (fail closed).
	ReasonAuditUnavailable
	// ReasonOAuthRefreshFailed: an OAuth token was about to expire and could
	// not be refreshed, so no stale token is sent.
	ReasonOAuthRefreshFailed
	// ReasonTokenExpired: the sandbox's proxy token was right but its
	// token_ttl has passed, or it was replaced by a re-issued one.
	ReasonTokenExpired
	// ReasonWebSocketUnreadable: a WebSocket whose handshake carried a
	// substituted value, with redaction on, whose frames egressd cannot
	// read to mask echoes: another WebSocket version, an extension the
	// upstream answered with, or a frame that breaks RFC 6455.
	ReasonWebSocketUnreadable
	// ReasonSNIMismatch: under the tenant's host rules, the TLS ClientHello
	// in a pass-through tunnel names another server than the CONNECT host,
	// names none where the CONNECT named a host, or hides its name (ECH).
	ReasonSNIMismatch
	// ReasonTunnelNotTLS: under the tenant's host rules, a pass-through
	// tunnel did not start with a TLS ClientHello egressd could read.
	ReasonTunnelNotTLS
	// ReasonRateLimited: the sandbox (or, for failed authentications, the
	// client address) is over its rate limit.
	ReasonRateLimited
	// ReasonNoOriginalDestination: a connection on the transparent
	// listener that the kernel did not redirect (no original destination
	// to read).
	ReasonNoOriginalDestination
	// ReasonTransparentLoop: a transparent connection whose original
	// destination is egressd's own listener.
	ReasonTransparentLoop
	// ReasonUnknownSource: no sandbox registers the source address of a
	// transparent connection (source_addrs).
	ReasonUnknownSource
	// ReasonNoServerName: a transparent connection that did not start with
	// a TLS ClientHello naming a host (SNI), nor with a plain HTTP request
	// naming one (Host): that is all that says where it goes.
	ReasonNoServerName
)

var reasonNames = [...]string{
	"", "no_credentials", "bad_credentials", "private_address", "own_listener", "host_denied",
	"unresolvable_host", "host_not_allowed", "location_not_allowed", "plain_http", "host_mismatch",
	"too_many_connections", "invalid_value", "bad_request", "resolve_error", "audit_unavailable",
	"oauth_refresh_failed", "token_expired", "websocket_unreadable",
	"sni_mismatch", "tunnel_not_tls", "rate_limited",
	"no_original_destination", "transparent_loop", "unknown_source", "no_server_name",
}

// String is the reason's wire name.
func (r Reason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return "unknown"
}

// Message is a sentence for the sandbox's developer.
func (r Reason) Message() string {
	switch r {
	case ReasonNoCredentials:
		return "proxy authentication required: set HTTPS_PROXY to the proxy URL of this sandbox"
	case ReasonBadCredentials:
		return "proxy authentication failed: unknown sandbox or wrong proxy token"
	case ReasonTokenExpired:
		return "the sandbox's proxy token expired or was replaced: ask the platform for a new one (POST /api/v1/sandboxes/{id}/token)"
	case ReasonPrivateAddress:
		return "destination address is private, loopback, link-local or otherwise not allowed"
	case ReasonOwnListener:
		return "destination is egressd itself"
	case ReasonHostDenied:
		return "destination host is not allowed for this tenant"
	case ReasonUnresolvable:
		return "destination host does not resolve"
	case ReasonHostNotAllowed:
		return "a placeholder's secret may not be sent to this host (allowed_hosts)"
	case ReasonLocationNotAllowed:
		return "a placeholder's secret may not be sent in this part of the request (substitute_in)"
	case ReasonPlainHTTP:
		return "placeholders are substituted only over TLS: use https"
	case ReasonHostMismatch:
		return "the request's host differs from the tunnel's host"
	case ReasonTooManyConnections:
		return "too many open connections for this sandbox"
	case ReasonInvalidValue:
		return "the secret's value cannot be carried in this part of the request"
	case ReasonBadRequest:
		return "the request could not be read"
	case ReasonResolveError:
		return "the secret could not be read"
	case ReasonAuditUnavailable:
		return "the audit log cannot be written, so no credential may be sent"
	case ReasonOAuthRefreshFailed:
		return "the OAuth token expired and could not be refreshed; connect the account again"
	case ReasonWebSocketUnreadable:
		return "the WebSocket carries a credential, so its frames must be readable to mask echoes: " +
			"RFC 6455 (version 13) without extensions only"
	case ReasonSNIMismatch:
		return "the TLS server name (SNI) must be the CONNECT host under this tenant's host rules"
	case ReasonTunnelNotTLS:
		return "under this tenant's host rules a tunnel carries only TLS that names its CONNECT host"
	case ReasonNoOriginalDestination:
		return "the transparent listener takes only connections the kernel redirected to it"
	case ReasonTransparentLoop:
		return "the connection was addressed to egressd itself"
	case ReasonUnknownSource:
		return "no sandbox is registered for this source address (source_addrs)"
	case ReasonNoServerName:
		return "transparent mode needs TLS with a server name (SNI), or HTTP/1 with a Host, to know the destination"
	case ReasonRateLimited:
		return "too many requests or connections from this sandbox (or failed authentications from this address): retry after the time in Retry-After"
	}
	return ""
}

// Status is the HTTP status a request refused for r answers.
func (r Reason) Status() int {
	switch r {
	case ReasonNoCredentials, ReasonBadCredentials, ReasonTokenExpired:
		return 407
	case ReasonRateLimited:
		return 429
	case ReasonTooManyConnections:
		return 429
	case ReasonBadRequest:
		return 400
	case ReasonResolveError, ReasonOAuthRefreshFailed:
		return 502
	case ReasonAuditUnavailable:
		return 503
	}
	return 403
}

// Outcome is how a proxied request ended.
type Outcome string

// The outcomes.
const (
	OutcomeSubstituted   Outcome = "substituted"
	OutcomePassed        Outcome = "passed"
	OutcomeDenied        Outcome = "denied"
	OutcomeUpstreamError Outcome = "upstream_error"
	OutcomeTunnelled     Outcome = "tunnelled"
)
