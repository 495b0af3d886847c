package config

import (
	"errors"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"reflect"
	"strings"
	"syscall"
	"testing"
)

func TestParseStaticHosts(t *testing.T) {
	got, err := ParseStaticHosts(" Upstream.Test=127.0.0.1, v6.internal.=::1,,db-1.corp.example=::ffff:10.1.2.3 ")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]netip.Addr{
		"upstream.test":     netip.MustParseAddr("127.0.0.1"),
		"v6.internal":       netip.MustParseAddr("::1"),
		"db-1.corp.example": netip.MustParseAddr("10.1.2.3"),
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	if got, err := ParseStaticHosts(""); err != nil || got != nil {
		t.Fatalf("empty: %v %v", got, err)
	}
	for _, bad := range []string{
		"upstream.test",                            // no address
		"upstream.test=",                           // empty address
		"=127.0.0.1",                               // empty name
		"*.example.com=10.0.0.1",                   // wildcard
		"upstream test=10.0.0.1",                   // space inside
		"up_stream.test=10.0.0.1",                  // underscore
		"-up.test=10.0.0.1",                        // leading hyphen
		"a..b=10.0.0.1",                            // empty label
		"10.0.0.2=10.0.0.1",                        // an IP literal as name
		"host.123=10.0.0.1",                        // numeric last label
		"up.test=example.com",                      // a name as address
		"up.test=10.0.0.0/8",                       // a CIDR as address
		"up.test=fe80::1%eth0",                     // a zone
		"up.test=10.0.0.1,UP.test=::1",             // the same name twice
		"up.test\x00=10.0.0.1",                     // control character
		strings.Repeat("a", 64) + ".test=10.0.0.1", // label too long
	} {
		if _, err := ParseStaticHosts(bad); err == nil || !strings.Contains(err.Error(), "--static-hosts") {
			t.Errorf("%q: err = %v, want one naming --static-hosts", bad, err)
		}
	}
}

func TestParseNoProxy(t *testing.T) {
	got, err := ParseNoProxy(" Internal.Example.com,.corp.example , 10.0.0.0/8,192.168.1.7/16,fd00::1, my_db ,,internal.example.com")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"internal.example.com", ".corp.example", "10.0.0.0/8", "192.168.0.0/16", "fd00::1", "my_db"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	if got, err := ParseNoProxy(""); err != nil || got != nil {
		t.Fatalf("empty: %v %v", got, err)
	}
	for _, bad := range []string{"*", "*.example.com", "a b", "host:8080", "[::1]", "a\tb", "a\nb", "..example.com", ".", "http://x", "fe80::1%eth0", "-x.example"} {
		if _, err := ParseNoProxy(bad); err == nil || !strings.Contains(err.Error(), "--sandbox-no-proxy") {
			t.Errorf("%q: err = %v, want one naming --sandbox-no-proxy", bad, err)
		}
	}
}

// Check parses both lists and names the flag of a bad one.
func TestServeCheckHostLists(t *testing.T) {
	s := Serve{StaticHosts: "a.test=127.0.0.1", SandboxNoProxy: ".internal"}
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
	if s.Hosts["a.test"] != netip.MustParseAddr("127.0.0.1") || !reflect.DeepEqual(s.NoProxy, []string{".internal"}) {
		t.Fatalf("hosts %v, no proxy %q", s.Hosts, s.NoProxy)
	}
	for _, s := range []Serve{{StaticHosts: "a.test"}, {SandboxNoProxy: "*"}} {
		if err := s.Check(); err == nil {
			t.Errorf("%+v accepted", s)
		}
	}
}

func TestFlagError(t *testing.T) {
	_, readErr := os.ReadFile("/nonexistent-egressd-test/x.pem")
	for _, c := range []struct {
		err  *FlagError
		want string
	}{
		{&FlagError{"--upstream-ca", "/x.pem", readErr}, "--upstream-ca /x.pem: no such file"},
		{&FlagError{"--master-key-file", "/k", &fs.PathError{Op: "read", Path: "/k", Err: syscall.EISDIR}}, "--master-key-file /k: is a directory"},
		{&FlagError{"--proxy-listen", "127.0.0.1:1", &net.OpError{Op: "listen", Net: "tcp", Err: os.NewSyscallError("bind", syscall.EADDRINUSE)}}, "--proxy-listen 127.0.0.1:1: address already in use"},
		{&FlagError{"--oauth-providers", "", errors.New("bad oauth providers file /p: not JSON")}, "--oauth-providers: bad oauth providers file /p: not JSON"},
	} {
		if got := c.err.Error(); got != c.want {
			t.Errorf("got %q, want %q", got, c.want)
		}
	}
	if !errors.Is(&FlagError{"--x", "v", readErr}, fs.ErrNotExist) {
		t.Error("FlagError does not unwrap")
	}
}
