package main

import (
	"crypto/tls"
	"errors"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// serve --transparent-listen binds the transparent listener, writes its
// address file, refuses a connection that was not redirected to it (a
// decision line says so), and removes the file on exit. The redirect
// itself is proxy's TestTransparentNetns.
func TestServeTransparentListen(t *testing.T) {
	if runtime.GOOS != "linux" {
		r := egressd(t, nil, "serve", "--data-dir", t.TempDir(), "--transparent-listen", "127.0.0.1:0")
		if r.code != 1 || !strings.Contains(r.stderr, "transparent mode needs Linux") {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
		return
	}
	dir := t.TempDir()
	s := serve(t, dir, nil, "--transparent-listen", "127.0.0.1:0")
	addrFile := filepath.Join(dir, "transparent.addr")
	addr := s.waitAddr(t, addrFile)
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{ServerName: "api.example.com", InsecureSkipVerify: true})
	if err == nil {
		c.Close()
		t.Fatal("a connection that was not redirected was served")
	}
	deadline := time.Now().Add(10 * time.Second)
	// Without conntrack tracking it (no nat table loaded) a connection has
	// no original destination; with it, the original destination is the
	// listener itself.
	for log := s.stderr.String(); !strings.Contains(log, `"reason":"no_original_destination"`) && !strings.Contains(log, `"reason":"transparent_loop"`); log = s.stderr.String() {
		if time.Now().After(deadline) {
			t.Fatalf("no decision line for the refusal; stderr:\n%s", s.stderr.String())
		}
		time.Sleep(10 * time.Millisecond) // polling the log with a deadline
	}
	if code := s.stop(t); code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, s.stderr.String())
	}
	if _, err := os.Stat(addrFile); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("transparent.addr left behind: %v", err)
	}
}
