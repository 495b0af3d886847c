package wsframe

import "errors"

// ErrProtocol is wrapped by every error that says the stream is not a
// readable sequence of WebSocket frames (as opposed to the source's own
// errors, and io.ErrUnexpectedEOF for a stream cut short).
var ErrProtocol = errors.New("wsframe: protocol error")

var (
	// ErrReservedBits: RSV1, RSV2 or RSV3 is set. No extension was
	// negotiated, so nothing gives them a meaning (RFC 6455 section 5.2);
	// a frame compressed by permessage-deflate, for one, sets RSV1.
	ErrReservedBits = protocolError("reserved bits set without a negotiated extension")
	// ErrOpcode: an opcode RFC 6455 reserves (3-7, 0xB-0xF).
	ErrOpcode = protocolError("reserved opcode")
	// ErrControlFragmented: a ping, pong or close frame without FIN.
	ErrControlFragmented = protocolError("fragmented control frame")
	// ErrControlTooLong: a control frame's payload is longer than
	// MaxControlPayload.
	ErrControlTooLong = protocolError("control frame longer than 125 bytes")
	// ErrLength: a 64-bit payload length with its most significant bit set.
	ErrLength = protocolError("payload length out of range")
	// ErrContinuation: a continuation frame with no message to continue.
	ErrContinuation = protocolError("continuation frame outside a fragmented message")
	// ErrUnfinished: a text or binary frame while a fragmented message is
	// still open.
	ErrUnfinished = protocolError("new message before the previous one finished")
)

// protocolError is one kind of ErrProtocol.
type protocolError string

func (e protocolError) Error() string { return "wsframe: " + string(e) }

// Is makes every kind match ErrProtocol.
func (e protocolError) Is(target error) bool { return target == ErrProtocol }
