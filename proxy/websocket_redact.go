package proxy

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/egressd/egressd/internal/wsframe"
)

// A WebSocket whose handshake carried a substituted value may echo that
// value in a frame, as any answer may. With redaction on, the upstream's
// frames are read (internal/wsframe) and every echo is masked back to its
// placeholder, as in a response body: one message's payload is one stream
// for the masker, so a value split across frames or fragments is masked
// too. Masking changes a payload's length, so the frames are written anew:
// a message may reach the client in other fragments than it left the
// upstream (RFC 6455 section 5.4 lets an intermediary refragment), always
// unmasked. To keep the frames readable, the handshake offers no extension
// (permessage-deflate would compress them); an upstream that answers with
// one anyway is refused before the 101, and a frame that cannot be read
// (reserved bits, reserved opcode, a control frame fragmented or over 125
// bytes, fragments out of order, a stream cut short) closes the connection
// and is recorded (websocket_unreadable): nothing unread reaches the
// client, and bytes held back as a possible start of a value are dropped.
// The client's frames pass as they are.

// wsEchoes returns the echoes to mask in a WebSocket's frames: those of a
// handshake that carried a substituted value, when redaction is on. Nil
// means the frames pass unread.
func (p *Proxy) wsEchoes(st *reqState) []echo {
	if !p.cfg.Redact || st == nil || st.sub == nil {
		return nil
	}
	echoes, _ := st.sub.snapshot()
	if len(echoes) == 0 {
		return nil
	}
	return echoes
}

// wsHandshake readies a WebSocket handshake whose frames will be read: it
// offers no extension. A handshake of a WebSocket version other than
// RFC 6455's, whose frames egressd cannot read whatever the upstream
// answers, is refused: the answer to send instead.
func (p *Proxy) wsHandshake(req *http.Request, st *reqState) *http.Response {
	if p.wsEchoes(st) == nil {
		return nil
	}
	if !wsVersion13(req.Header) {
		st.deny = ReasonWebSocketUnreadable
		return errorResponse(req, ReasonWebSocketUnreadable.Status(), ReasonWebSocketUnreadable, "")
	}
	req.Header.Del("Sec-WebSocket-Extensions")
	return nil
}

// wsVersion13 reports whether a handshake asks for RFC 6455's WebSocket
// (Sec-WebSocket-Version 13, or none, which no other version omits but
// the keys of the old hixie-76 drafts).
func wsVersion13(h http.Header) bool {
	if h.Get("Sec-WebSocket-Key1") != "" || h.Get("Sec-WebSocket-Key2") != "" {
		return false
	}
	v := h.Values("Sec-WebSocket-Version")
	return len(v) == 0 || len(v) == 1 && strings.TrimSpace(v[0]) == "13"
}

// wsExtensionAnswered reports whether an upstream's 101 agrees to an
// extension, which it was not offered: its frames would not be readable.
func wsExtensionAnswered(h http.Header) bool {
	for _, v := range h.Values("Sec-WebSocket-Extensions") {
		if strings.TrimSpace(v) != "" {
			return true
		}
	}
	return false
}

// refuseUpgrade answers a 101 whose frames could not be read with a
// refusal, and ends the tunnel (the upstream's connection with it).
func (c *mitmConn) refuseUpgrade(req *http.Request, st *reqState, up io.Closer) {
	up.Close()
	st.deny = ReasonWebSocketUnreadable
	resp := errorResponse(req, http.StatusBadGateway, ReasonWebSocketUnreadable, "")
	c.p.respond(st, resp)
	c.answer(req, resp, st, false, false)
}

// relayMasked copies the upstream's frames to the client with echoes
// masked, until the upstream's stream ends. A stream that cannot be read
// ends with a close frame (1014, bad gateway) and is recorded; the caller
// closes the connection.
func (c *mitmConn) relayMasked(up io.Reader, st *reqState, echoes []echo) {
	r := newFrameRelay(c.conn, up, echoes)
	err := r.run()
	if err == nil || r.werr != nil || !errors.Is(err, wsframe.ErrProtocol) && !errors.Is(err, io.ErrUnexpectedEOF) {
		return // a clean end, or either side went away
	}
	r.control(wsframe.Close, binary.BigEndian.AppendUint16(nil, 1014))
	p := c.p
	p.log.Debug("websocket: an upstream frame could not be read", "sandbox", c.sess.sbx.ID, "host", c.sess.host, "err", err.Error())
	now := p.cfg.Now()
	ev := p.event(st)
	ev.ID, ev.Time = newEventID(now), now
	ev.Status, ev.Outcome, ev.Reason = http.StatusSwitchingProtocols, OutcomeDenied, ReasonWebSocketUnreadable.String()
	p.finish(st.ctx, ev, nil)
}

// frameRelay reads frames from an upstream and writes them, echoes
// masked, to the client.
type frameRelay struct {
	fr     *wsframe.Reader
	bw     *bufio.Writer
	echoes []echo
	buf    []byte // a payload read
	hdr    []byte // a header written

	msg     msgMasker
	op      wsframe.Opcode // the current message's opcode
	started bool           // a frame of the current message was written
	werr    error          // the client could not be written to
}

// relayRead is how much of a payload is read at once.
const relayRead = 16 << 10

func newFrameRelay(dst io.Writer, src io.Reader, echoes []echo) *frameRelay {
	return &frameRelay{
		fr: wsframe.NewReader(src), bw: bufio.NewWriterSize(dst, relayRead+wsframe.MaxHeader),
		echoes: echoes, buf: make([]byte, relayRead), msg: msgMasker{echoes: echoes},
	}
}

// run relays frames until the upstream's stream ends: nil at a clean end
// (between messages), the reader's error otherwise, or the client's.
func (r *frameRelay) run() error {
	for {
		h, err := r.fr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if h.Opcode.Control() {
			// At most MaxControlPayload bytes: the reader checked.
			var b [wsframe.MaxControlPayload]byte
			n, err := io.ReadFull(r.fr, b[:h.Length])
			if err != nil {
				return err
			}
			if err := r.control(h.Opcode, maskAll(b[:n], r.echoes)); err != nil {
				return err
			}
			continue
		}
		if h.Opcode != wsframe.Continuation {
			r.op, r.started = h.Opcode, false
		}
		if err := r.data(h.Fin); err != nil {
			return err
		}
	}
}

// data passes one data frame's payload through the message's masker.
// What is decided goes out as it comes, in fragments; the message's last
// frame flushes what was held back.
func (r *frameRelay) data(fin bool) error {
	for {
		n, err := r.fr.Read(r.buf)
		r.msg.write(r.buf[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		if out := r.msg.out(); len(out) > 0 && (!fin || r.fr.Remaining() > 0) {
			if err := r.fragment(false, out); err != nil {
				return err
			}
		}
	}
	if !fin {
		if out := r.msg.out(); len(out) > 0 {
			return r.fragment(false, out)
		}
		return nil
	}
	err := r.fragment(true, r.msg.end())
	r.started = false
	return err
}

// fragment writes one frame of the current message.
func (r *frameRelay) fragment(fin bool, payload []byte) error {
	op := r.op
	if r.started {
		op = wsframe.Continuation
	}
	r.started = true
	r.hdr = wsframe.AppendHeader(r.hdr[:0], fin, op, len(payload))
	r.bw.Write(r.hdr)
	r.bw.Write(payload)
	r.msg.taken()
	return r.flush()
}

// control writes a control frame, its payload cut to fit (masking may
// have made it longer).
func (r *frameRelay) control(op wsframe.Opcode, payload []byte) error {
	payload = fitControl(op, payload)
	r.hdr = wsframe.AppendHeader(r.hdr[:0], true, op, len(payload))
	r.bw.Write(r.hdr)
	r.bw.Write(payload)
	return r.flush()
}

func (r *frameRelay) flush() error {
	if err := r.bw.Flush(); err != nil {
		r.werr = err
		return err
	}
	return nil
}

// fitControl cuts a control payload longer than a control frame may
// carry: a close frame keeps its code and as much of its reason as fits
// in whole UTF-8 characters; a ping's or pong's payload is cut.
func fitControl(op wsframe.Opcode, b []byte) []byte {
	if len(b) <= wsframe.MaxControlPayload {
		return b
	}
	n := wsframe.MaxControlPayload
	if op == wsframe.Close {
		for n > 2 && !utf8.RuneStart(b[n]) {
			n--
		}
	}
	return b[:n]
}

// msgMasker masks echoes in one message's payload as it streams, with the
// response redactor's rules (redact.go): bytes that may begin a value
// wait for the next piece, and the end of the message decides them.
type msgMasker struct {
	r      redactor
	echoes []echo
}

// write adds a piece of the payload.
func (m *msgMasker) write(p []byte) {
	m.r.buf = append(m.r.buf, p...)
	if safe := len(m.r.buf) - holdBack(m.r.buf, m.echoes); safe > 0 {
		m.r.decide(m.echoes, safe)
	}
}

// out is the masked payload decided so far and not yet taken.
func (m *msgMasker) out() []byte { return m.r.out }

// taken forgets the output returned by out or end.
func (m *msgMasker) taken() { m.r.out = m.r.out[:0] }

// end decides what was held back (the message is whole) and returns the
// output not yet taken.
func (m *msgMasker) end() []byte {
	if len(m.r.buf) > 0 {
		m.r.decide(m.echoes, len(m.r.buf))
	}
	return m.r.out
}
