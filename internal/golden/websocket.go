package golden

import (
	"bufio"
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"

	"github.com/egressd/egressd/internal/wsframe"
)

// A case whose upstream section says "echo: websocket" has the recording
// upstream accept the request's WebSocket handshake (101) and send what
// the other echo lines give ("header NAME": "NAME: value" lines) as
// frames: one text message; the same text in two fragments, cut in the
// middle of the last echoed header's value, with a ping between; one
// binary message; then a close frame (1000), and it closes. The sandbox's
// side reads the frames to the end, and the result's body is their
// transcript, one line each, which the response's contains and lacks
// lines check:
//
//	text: <the message>
//	ping: <payload>
//	binary: <the message, Go-quoted>
//	close: <code> <reason>
//
// A stream that ends in a way a client cannot read adds "error: ...".

// wsEcho is the echo line that asks for a WebSocket.
const wsEcho = "websocket"

// wsGUID is RFC 6455's key suffix for Sec-WebSocket-Accept.
const wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// serveWebSocket answers r as a WebSocket echo when echo asks for one and
// r is a handshake; false leaves r to the plain answer.
func serveWebSocket(w http.ResponseWriter, r *http.Request, echo []string, text []byte) bool {
	if !slices.Contains(echo, wsEcho) || !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		return false
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return true
	}
	defer conn.Close()
	sum := sha1.Sum([]byte(r.Header.Get("Sec-WebSocket-Key") + wsGUID))
	brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Accept: " + base64.StdEncoding.EncodeToString(sum[:]) + "\r\n\r\n")
	cut := len(text) / 2
	for _, e := range echo {
		if name, ok := strings.CutPrefix(e, "header "); ok {
			if v := r.Header.Get(name); v != "" && bytes.LastIndex(text, []byte(v)) >= 0 {
				cut = bytes.LastIndex(text, []byte(v)) + len(v)/2
			}
		}
	}
	frame := func(fin bool, op wsframe.Opcode, p []byte) {
		brw.Write(wsframe.AppendHeader(nil, fin, op, len(p)))
		brw.Write(p)
	}
	frame(true, wsframe.Text, text)
	frame(false, wsframe.Text, text[:cut])
	frame(true, wsframe.Ping, []byte("ping"))
	frame(true, wsframe.Continuation, text[cut:])
	frame(true, wsframe.Binary, text)
	frame(true, wsframe.Close, binary.BigEndian.AppendUint16(nil, 1000))
	brw.Flush()
	return true
}

// wsTranscript reads frames from br to the end of the stream and writes
// what the sandbox saw, one line each.
func wsTranscript(br *bufio.Reader) []byte {
	var out bytes.Buffer
	fr := wsframe.NewReader(br)
	var op wsframe.Opcode
	var msg []byte
	for {
		h, err := fr.Next()
		if err == io.EOF {
			break
		}
		var p []byte
		if err == nil {
			p, err = io.ReadAll(fr)
		}
		if err == nil && h.Masked {
			err = fmt.Errorf("a masked frame from the server")
		}
		if err != nil {
			fmt.Fprintf(&out, "error: %v\n", err)
			break
		}
		switch {
		case h.Opcode == wsframe.Close:
			code := 0
			if len(p) >= 2 {
				code = int(binary.BigEndian.Uint16(p))
				p = p[2:]
			}
			fmt.Fprintf(&out, "close: %d %s\n", code, p)
			continue
		case h.Opcode.Control():
			fmt.Fprintf(&out, "%s: %s\n", map[wsframe.Opcode]string{wsframe.Ping: "ping", wsframe.Pong: "pong"}[h.Opcode], p)
			continue
		case h.Opcode != wsframe.Continuation:
			op, msg = h.Opcode, nil
		}
		msg = append(msg, p...)
		if !h.Fin {
			continue
		}
		if op == wsframe.Text {
			fmt.Fprintf(&out, "text: %s\n", msg)
		} else {
			fmt.Fprintf(&out, "binary: %q\n", msg)
		}
	}
	return out.Bytes()
}
