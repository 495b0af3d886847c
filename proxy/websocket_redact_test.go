package proxy

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/egressd/egressd/vault"
)

// wsScript is what a test's WebSocket upstream does after the handshake
// req: the extra header lines of its 101 ("Name: value\r\n" each), how
// many bytes it reads from the client before it answers, and the bytes it
// then sends before it closes the connection.
type wsScript func(req *http.Request) (head string, readFirst int, frames []byte)

// wsServer is a raw upstream playing a WebSocket server byte for byte.
type wsServer struct {
	up         *rawUpstream
	handshakes chan *http.Request
	fromClient chan []byte
}

func newWSServer(t *testing.T, script wsScript) *wsServer {
	t.Helper()
	s := &wsServer{handshakes: make(chan *http.Request, 10), fromClient: make(chan []byte, 10)}
	s.up = newRawUpstream(t, func(c net.Conn) {
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		s.handshakes <- req
		head, readFirst, frames := script(req)
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
			"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"+head+"\r\n")
		if readFirst > 0 {
			got := make([]byte, readFirst)
			if _, err := io.ReadFull(br, got); err != nil {
				return
			}
			s.fromClient <- got
		}
		c.Write(frames)
	})
	return s
}

// wsEnv is an env whose tunnels reach s, with a secret that may go to
// api.test.
func wsEnv(t *testing.T, s *wsServer, mod func(*Config)) (e *env, sbx vault.Sandbox, token, ph string) {
	t.Helper()
	e = newEnv(t, func(c *Config) {
		c.UpstreamRoots = s.up.roots
		if mod != nil {
			mod(c)
		}
	})
	e.up.port = s.up.port
	sbx, token = e.sandbox(vault.SandboxInput{})
	e.secret(vault.SecretInput{Name: "k", Value: realValue, Scope: vault.ScopeTenant, AllowedHosts: []string{"api.test"}})
	e.noLeak(t, realValue)
	return e, sbx, token, e.placeholder(sbx, "k")
}

// wsHandshake is a browser's handshake, offering permessage-deflate, with
// extra header lines.
func wsHandshake(extra string) string {
	return "GET /ws HTTP/1.1\r\nHost: api.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
		"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n" + extra + "\r\n"
}

// wsOpen sends the handshake through a tunnel and reads the answer's head.
func wsOpen(t *testing.T, e *env, sbx vault.Sandbox, token, handshake string) (*tunnel, *http.Response) {
	t.Helper()
	tn := e.rawTunnel(t, sbx.ID, token, "api.test")
	tn.send(handshake)
	resp, err := http.ReadResponse(tn.br, &http.Request{Method: "GET"})
	if err != nil {
		t.Fatalf("reading the handshake's answer: %v", err)
	}
	return tn, resp
}

// clientFrame is a masked text frame, as a client sends it.
func clientFrame(s string) []byte {
	return wsFrame(true, 1, []byte(s), wsFrameOpts{masked: true, key: [4]byte{0x11, 0x22, 0x33, 0x44}})
}

// Regression (issue 13, finding 3): after a 101 the upstream's frames
// passed unread, so an upstream that echoed a substituted handshake
// header in a frame handed the real value to the sandbox.
func TestWebSocketEchoMasked(t *testing.T) {
	long := strings.Repeat("x", 70000)
	cases := []struct {
		name string
		// frames echo auth, the Authorization the upstream got; want is
		// what the sandbox must see, with ph its placeholder.
		frames func(auth string) []byte
		want   func(auth string) []wsEvent
	}{{
		name:   "text frame",
		frames: func(a string) []byte { return textFrame(true, "got "+a) },
		want:   func(a string) []wsEvent { return []wsEvent{{1, "got " + a}} },
	}, {
		name: "text in two fragments with a ping between",
		frames: func(a string) []byte {
			cut := len(a) - len(realValue)/2
			return slices.Concat(textFrame(false, "got "+a[:cut]), pingFrame("p"), contFrame(true, a[cut:]+" ok"))
		},
		want: func(a string) []wsEvent { return []wsEvent{{9, "p"}, {1, "got " + a + " ok"}} },
	}, {
		name:   "binary frame",
		frames: func(a string) []byte { return wsFrame(true, 2, []byte("\x00\x01"+a+"\xff"), wsFrameOpts{}) },
		want:   func(a string) []wsEvent { return []wsEvent{{2, "\x00\x01" + a + "\xff"}} },
	}, {
		name: "masked by the server",
		frames: func(a string) []byte {
			return wsFrame(true, 1, []byte(a), wsFrameOpts{masked: true, key: [4]byte{9, 8, 7, 6}})
		},
		want: func(a string) []wsEvent { return []wsEvent{{1, a}} },
	}, {
		name: "one byte a fragment, 16- and 64-bit lengths",
		frames: func(a string) []byte {
			var b []byte
			for i := range len(a) {
				op := byte(0)
				if i == 0 {
					op = 1
				}
				b = append(b, wsFrame(i == len(a)-1, op, []byte(a[i:i+1]), wsFrameOpts{lenForm: []int{0, 16, 64}[i%3]})...)
			}
			return slices.Concat(b, wsFrame(true, 2, []byte(long+a), wsFrameOpts{}))
		},
		want: func(a string) []wsEvent { return []wsEvent{{1, a}, {2, long + a}} },
	}, {
		name:   "in a ping and a close reason",
		frames: func(a string) []byte { return slices.Concat(pingFrame(a), closeFrame(1000, a)) },
		want:   func(a string) []wsEvent { return []wsEvent{{9, a}, {8, "\x03\xe8" + a}} },
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sent := clientFrame("hello {{not a value}}")
			s := newWSServer(t, func(req *http.Request) (string, int, []byte) {
				return "", len(sent), slices.Concat(tc.frames(req.Header.Get("Authorization")), closeFrame(1000, "bye"))
			})
			e, sbx, token, ph := wsEnv(t, s, nil)
			tn, resp := wsOpen(t, e, sbx, token, wsHandshake("Authorization: Bearer "+ph+"\r\n"))
			if resp.StatusCode != http.StatusSwitchingProtocols {
				t.Fatalf("status %d", resp.StatusCode)
			}
			hs := <-s.handshakes
			if got := hs.Header.Get("Authorization"); got != "Bearer "+realValue {
				t.Fatal("the handshake's placeholder was not substituted")
			}
			if ext, ok := hs.Header["Sec-Websocket-Extensions"]; ok {
				t.Errorf("the upstream was offered extensions %q: its frames could not be read", ext)
			}
			// Client to server: as sent.
			if _, err := tn.conn.Write(sent); err != nil {
				t.Fatal(err)
			}
			if got := <-s.fromClient; !bytes.Equal(got, sent) {
				t.Errorf("the upstream got %q, the client sent %q", got, sent)
			}
			raw, err := io.ReadAll(tn.br)
			if err != nil {
				t.Fatalf("reading the frames: %v", err)
			}
			if bytes.Contains(raw, []byte(realValue[:len(realValue)/2])) {
				t.Fatal("the sandbox got the value (or half of it) in a frame")
			}
			frames, bad := refParse(raw)
			if bad != "" {
				t.Fatalf("the sandbox got frames it cannot read: %s", bad)
			}
			for _, f := range frames {
				if f.masked {
					t.Fatal("the sandbox got a masked frame (a client must close on one)")
				}
			}
			got, unfinished := refEvents(frames)
			want := append(tc.want("Bearer "+ph), wsEvent{8, "\x03\xe8bye"})
			if !slices.Equal(got, want) || unfinished != nil {
				t.Errorf("the sandbox saw\n%v\nwant\n%v", got, want)
			}
			if ev := e.event(t); ev.Outcome != OutcomeSubstituted || ev.Status != http.StatusSwitchingProtocols {
				t.Errorf("event %s %d %q", ev.Outcome, ev.Status, ev.Reason)
			}
		})
	}
}

// wsUnreadableEvent waits for the record of a WebSocket closed for an
// unreadable frame, skipping others.
func wsUnreadableEvent(t *testing.T, e *env) *Event {
	t.Helper()
	for {
		if ev := e.event(t); ev.Reason == ReasonWebSocketUnreadable.String() {
			return ev
		}
	}
}

// A frame egressd cannot read closes the connection (fail closed): what
// was read and decided before it reaches the client, then a close frame
// (1014, bad gateway), never the unread bytes, nor the start of a value
// held back; and it is recorded.
func TestWebSocketUnreadableFrameCloses(t *testing.T) {
	v := realValue
	huge := uint64(1) << 63
	cases := []struct {
		name string
		bad  []byte
		// unfinished is what the sandbox gets of a message the bad frame
		// cut off: the bytes decided before it, not the value's start.
		unfinished string
	}{
		{"RSV1 (permessage-deflate)", wsFrame(true, 1, []byte(v), wsFrameOpts{rsv: 0x40}), ""},
		{"RSV2", wsFrame(true, 2, []byte(v), wsFrameOpts{rsv: 0x20}), ""},
		{"RSV3 on a ping", wsFrame(true, 9, []byte(v), wsFrameOpts{rsv: 0x10}), ""},
		{"reserved data opcode", wsFrame(true, 3, []byte(v), wsFrameOpts{}), ""},
		{"reserved control opcode", wsFrame(true, 0xB, []byte(v), wsFrameOpts{}), ""},
		{"fragmented ping", wsFrame(false, 9, []byte(v), wsFrameOpts{}), ""},
		{"ping over 125 bytes", wsFrame(true, 9, []byte(strings.Repeat(v, 7)), wsFrameOpts{}), ""},
		{"ping with a 16-bit length", wsFrame(true, 9, []byte(v), wsFrameOpts{lenForm: 16}), ""},
		{"continuation first", contFrame(true, v), ""},
		{"text inside a message", slices.Concat(textFrame(false, "a"), textFrame(true, v)), "a"},
		{"64-bit length, top bit", wsFrame(true, 2, []byte(v), wsFrameOpts{declared: &huge}), ""},
		{"cut in a payload", textFrame(true, "x"+v+strings.Repeat("y", 100))[:2+1+len(v)-1], "x"},
		{"cut between fragments", textFrame(false, "x"+v[:len(v)-1]), "x"},
		{"cut in a header", []byte{0x81, 0xFE, 0x01}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newWSServer(t, func(*http.Request) (string, int, []byte) {
				return "", 0, slices.Concat(textFrame(true, "before"), tc.bad)
			})
			e, sbx, token, ph := wsEnv(t, s, nil)
			tn, resp := wsOpen(t, e, sbx, token, wsHandshake("Authorization: Bearer "+ph+"\r\n"))
			if resp.StatusCode != http.StatusSwitchingProtocols {
				t.Fatalf("status %d", resp.StatusCode)
			}
			raw, err := io.ReadAll(tn.br)
			if err != nil {
				t.Fatalf("reading the frames: %v", err)
			}
			if bytes.Contains(raw, []byte(v[:len(v)/2])) {
				t.Fatal("the sandbox got the value (or half of it)")
			}
			frames, why := refParse(raw)
			if why != "" && !(tc.unfinished != "" && why == "cut short in a message") {
				t.Fatalf("the sandbox got frames it cannot read: %s", why)
			}
			got, unfinished := refEvents(frames)
			want := []wsEvent{{1, "before"}, {8, "\x03\xf6"}}
			if !slices.Equal(got, want) || string(unfinished) != tc.unfinished {
				t.Errorf("the sandbox saw %v and unfinished %q, want %v and %q", got, unfinished, want, tc.unfinished)
			}
			ev := wsUnreadableEvent(t, e)
			if ev.Outcome != OutcomeDenied || ev.SandboxID != sbx.ID || ev.Host != "api.test" || ev.Path != "/ws" {
				t.Errorf("record %+v", ev)
			}
		})
	}
}

// The handshake offers the upstream no extension; an upstream that
// answers with one anyway is refused before the 101 reaches the client.
func TestWebSocketExtensionAnsweredRefused(t *testing.T) {
	s := newWSServer(t, func(*http.Request) (string, int, []byte) {
		return "Sec-WebSocket-Extensions: permessage-deflate\r\n", 0, wsFrame(true, 1, []byte(realValue), wsFrameOpts{rsv: 0x40})
	})
	e, sbx, token, ph := wsEnv(t, s, nil)
	tn, resp := wsOpen(t, e, sbx, token, wsHandshake("X-Key: "+ph+"\r\n"))
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusBadGateway || resp.Header.Get("X-Egress-Denied") != "websocket_unreadable" {
		t.Fatalf("status %d %q %s", resp.StatusCode, resp.Header.Get("X-Egress-Denied"), body)
	}
	if !tn.closed() {
		t.Error("the tunnel stayed open")
	}
	if ext := (<-s.handshakes).Header.Values("Sec-WebSocket-Extensions"); len(ext) > 0 {
		t.Errorf("the upstream was offered %q", ext)
	}
	ev := e.event(t)
	if ev.Outcome != OutcomeDenied || ev.Reason != "websocket_unreadable" || ev.Status != http.StatusBadGateway {
		t.Errorf("event %s %q %d", ev.Outcome, ev.Reason, ev.Status)
	}
}

// A handshake of another WebSocket version carrying a value is refused
// before it leaves: egressd could not read its frames.
func TestWebSocketOtherVersionRefused(t *testing.T) {
	for name, hdr := range map[string]string{
		"version 8":          "Sec-WebSocket-Version: 8\r\n",
		"two versions":       "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Version: 8\r\n",
		"hixie-76 handshake": "Sec-WebSocket-Key1: 4 @1  46546xW%0l 1 5\r\nSec-WebSocket-Key2: 12998 5 Y3 1  .P00\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			s := newWSServer(t, func(*http.Request) (string, int, []byte) { return "", 0, nil })
			e, sbx, token, ph := wsEnv(t, s, nil)
			_, resp := wsOpen(t, e, sbx, token, "GET /ws HTTP/1.1\r\nHost: api.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"+
				hdr+"X-Key: "+ph+"\r\n\r\n")
			if resp.StatusCode != http.StatusForbidden || resp.Header.Get("X-Egress-Denied") != "websocket_unreadable" {
				t.Fatalf("status %d %q", resp.StatusCode, resp.Header.Get("X-Egress-Denied"))
			}
			select {
			case <-s.handshakes:
				t.Fatal("the handshake went upstream")
			default:
			}
			if ev := e.event(t); ev.Outcome != OutcomeDenied || ev.Reason != "websocket_unreadable" {
				t.Errorf("event %s %q", ev.Outcome, ev.Reason)
			}
		})
	}
}

// Frames of a WebSocket that carried no value, or with redaction off,
// pass unread, byte for byte, and its handshake keeps its extensions.
func TestWebSocketWithoutRedactionUnread(t *testing.T) {
	// Unreadable to egressd (compressed, and a reserved opcode): passed.
	frames := slices.Concat(wsFrame(true, 1, []byte("deflated"), wsFrameOpts{rsv: 0x40}), wsFrame(true, 3, nil, wsFrameOpts{}))
	for _, tc := range []struct {
		name   string
		redact bool
		value  bool
	}{{"no value", true, false}, {"redaction off", false, true}} {
		t.Run(tc.name, func(t *testing.T) {
			s := newWSServer(t, func(*http.Request) (string, int, []byte) {
				return "Sec-WebSocket-Extensions: permessage-deflate\r\n", 0, frames
			})
			e, sbx, token, ph := wsEnv(t, s, func(c *Config) { c.Redact = tc.redact })
			extra := ""
			if tc.value {
				extra = "X-Key: " + ph + "\r\n"
			}
			tn, resp := wsOpen(t, e, sbx, token, wsHandshake(extra))
			if resp.StatusCode != http.StatusSwitchingProtocols {
				t.Fatalf("status %d", resp.StatusCode)
			}
			if ext := (<-s.handshakes).Header.Get("Sec-WebSocket-Extensions"); ext == "" {
				t.Error("the handshake lost its extensions")
			}
			raw, err := io.ReadAll(tn.br)
			if err != nil || !bytes.Equal(raw, frames) {
				t.Errorf("got %q %v, want the frames as sent", raw, err)
			}
		})
	}
}
