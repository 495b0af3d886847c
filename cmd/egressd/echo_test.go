package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestEcho runs egressd echo on a free port: it writes its certificate and
// address once it serves, answers a request over verified TLS with what it
// received, logs that on stdout, and stops on SIGTERM with exit 0.
func TestEcho(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	certFile, addrFile := filepath.Join(dir, "echo.pem"), filepath.Join(dir, "echo.addr")
	cmd := exec.Command(bin, "echo", "--listen", "127.0.0.1:0", "--cert-out", certFile, "--addr-out", addrFile)
	cmd.Env = baseEnv()
	stdout, stderr := &syncBuffer{}, &syncBuffer{}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-exited
		}
	})

	var addr string
	for deadline := time.Now().Add(15 * time.Second); addr == ""; {
		if b, err := os.ReadFile(addrFile); err == nil {
			addr = strings.TrimSpace(string(b))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no address file; stderr:\n%s", stderr.String())
		}
		select {
		case err := <-exited:
			t.Fatalf("echo exited at start (%v); stderr:\n%s", err, stderr.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatalf("the address file is written before the certificate: %v", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(certPEM) {
		t.Fatalf("--cert-out is not a PEM certificate:\n%s", certPEM)
	}
	_, port, _ := net.SplitHostPort(addr)
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}}

	// Each default name is in the certificate; the client verifies it.
	for _, host := range []string{"echo.test", "localhost", "127.0.0.1", "[::1]"} {
		req, _ := http.NewRequest("POST", "https://"+host+":"+port+"/hello/"+host+"?q=1", strings.NewReader("a body"))
		req.Header.Set("Authorization", "Bearer the-real-key")
		req.Header.Add("X-Two", "a")
		req.Header.Add("X-Two", "b")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", host, err)
		}
		var got echoAnswer
		err = json.NewDecoder(resp.Body).Decode(&got)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("%s: status %d, %s, %v", host, resp.StatusCode, resp.Header.Get("Content-Type"), err)
		}
		if got.Method != "POST" || got.Path != "/hello/"+host || got.Query != "q=1" ||
			got.Headers["Authorization"] != "Bearer the-real-key" || got.Headers["X-Two"] != "a, b" ||
			got.Headers["Host"] != host+":"+port {
			t.Fatalf("%s: answer %+v", host, got)
		}
	}
	// stdout reaches the buffer through a pipe: wait for the fourth line.
	for deadline := time.Now().Add(5 * time.Second); strings.Count(stdout.String(), "\n") < 4 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	lines := strings.Split(strings.TrimSuffix(stdout.String(), "\n"), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "POST /hello/echo.test?q=1 ") ||
		!strings.Contains(lines[0], ` Authorization="Bearer the-real-key" `) || !strings.Contains(lines[0], ` X-Two="a, b"`) {
		t.Fatalf("stdout should hold one line a request, with method, path and headers:\n%s", stdout.String())
	}

	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("SIGTERM: %v; stderr:\n%s", err, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("echo did not stop on SIGTERM")
	}
	if !strings.Contains(stderr.String(), "serving https://"+addr) || !strings.Contains(stderr.String(), "egressd echo: stopped") {
		t.Fatalf("stderr:\n%s", stderr.String())
	}
}

// TestEchoCertificate checks the self-signed certificate: names that are
// IP addresses go into the IP SANs, the key is ECDSA P-256, and it verifies
// as its own root for each name.
func TestEchoCertificate(t *testing.T) {
	t.Parallel()
	cert, certPEM, err := echoCertificate([]string{"api.example.test", "10.0.0.1", "[fd00::1]"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if leaf.PublicKeyAlgorithm != x509.ECDSA || len(leaf.DNSNames) != 1 || len(leaf.IPAddresses) != 2 {
		t.Fatalf("key %v, DNS %v, IP %v", leaf.PublicKeyAlgorithm, leaf.DNSNames, leaf.IPAddresses)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(certPEM)
	for _, name := range []string{"api.example.test", "10.0.0.1", "fd00::1"} {
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: roots}); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: "other.test", Roots: roots}); err == nil {
		t.Error("verified for a name it does not hold")
	}
}

// TestEchoUsage: no name, or a port that cannot be bound, fails clearly.
func TestEchoUsage(t *testing.T) {
	t.Parallel()
	if r := egressd(t, nil, "echo", "--name", " , "); r.code != 2 || !strings.Contains(r.stderr, "--name") {
		t.Fatalf("empty --name: exit %d, stderr %s", r.code, r.stderr)
	}
	if r := egressd(t, nil, "echo", "--listen", "127.0.0.1:99999"); r.code != 1 || !strings.Contains(r.stderr, "egressd echo:") {
		t.Fatalf("bad --listen: exit %d, stderr %s", r.code, r.stderr)
	}
	if r := egressd(t, nil, "echo", "-h"); r.code != 0 || !strings.Contains(r.stderr, "--cert-out") && !strings.Contains(r.stderr, "-cert-out") {
		t.Fatalf("-h: exit %d, stderr %s", r.code, r.stderr)
	}
}
