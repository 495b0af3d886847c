package main

import (
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// refused checks that serve refused as it must before anything is created:
// exit 1, nothing on stdout, exactly one line on stderr that names want.
func refused(t *testing.T, r result, want string) {
	t.Helper()
	line, rest, _ := strings.Cut(r.stderr, "\n")
	if r.code != 1 || r.stdout != "" || rest != "" || !strings.HasPrefix(line, "egressd serve: ") || !strings.Contains(line, want) {
		t.Fatalf("exit %d, want 1 with one line naming %q; stdout %q, stderr:\n%s", r.code, want, r.stdout, r.stderr)
	}
}

// dirState lists every file under dir with its size, mode and time, to
// tell that nothing in it changed.
func dirState(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s %d %s %s\n", p, fi.Size(), fi.Mode(), fi.ModTime())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestServeRefusesBeforeCreating guards against a serve that created the
// data dir, master key, CA and vault and printed the first keys before it
// found a bad flag, file or busy port.
func TestServeRefusesBeforeCreating(t *testing.T) {
	t.Parallel()
	tmp := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(tmp, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	garbageCA := write("garbage-ca.pem", "not a certificate\n")
	garbageKey := write("garbage.key", "not-a-master-key\n")
	unreadableKey := write("unreadable.key", strings.Repeat("ab", 32)+"\n")
	if err := os.Chmod(unreadableKey, 0); err != nil {
		t.Fatal(err)
	}
	badProviders := write("providers.json", "{not json")
	notDir := write("plain-file", "x")
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { busy.Close() })
	busyAddr := busy.Addr().String()
	// A port that was free a moment ago, for two flags at once: the
	// second bind fails.
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	freeAddr := free.Addr().String()
	free.Close()
	missing := filepath.Join(tmp, "missing.pem")

	cases := []struct {
		name string
		args []string
		env  []string
		want string
		// asUser: the case needs a user that file modes apply to.
		asUser bool
	}{
		{name: "upstream CA missing", args: []string{"--upstream-ca", missing}, want: "--upstream-ca " + missing + ": no such file"},
		{name: "upstream CA garbage", args: []string{"--upstream-ca", garbageCA}, want: "--upstream-ca " + garbageCA + ": no PEM certificate in it"},
		{name: "upstream CA a directory", args: []string{"--upstream-ca", tmp}, want: "--upstream-ca " + tmp + ": is a directory"},
		{name: "master key file a directory", args: []string{"--master-key-file", tmp}, want: "--master-key-file " + tmp + ": is a directory"},
		{name: "master key file garbage", args: []string{"--master-key-file", garbageKey}, want: "--master-key-file " + garbageKey + ": not a master key"},
		{name: "master key file unreadable", args: []string{"--master-key-file", unreadableKey}, want: "--master-key-file " + unreadableKey + ": permission denied", asUser: true},
		{name: "master key in the environment garbage", env: []string{"EGRESSD_MASTER_KEY=not-a-key"}, want: "EGRESSD_MASTER_KEY"},
		{name: "proxy port busy", args: []string{"--proxy-listen", busyAddr}, want: "--proxy-listen " + busyAddr + ": address already in use"},
		{name: "admin port busy", args: []string{"--admin-listen", busyAddr}, want: "--admin-listen " + busyAddr + ": address already in use"},
		{name: "metrics port busy", args: []string{"--metrics-listen", busyAddr}, want: "--metrics-listen " + busyAddr + ": address already in use"},
		{name: "admin and metrics on one port", args: []string{"--admin-listen", freeAddr, "--metrics-listen", freeAddr}, want: ": address already in use"},
		{name: "oauth providers missing", args: []string{"--oauth-providers", missing}, want: "--oauth-providers " + missing + ": no such file"},
		{name: "oauth providers garbage", args: []string{"--oauth-providers", badProviders}, want: "--oauth-providers: "},
		{name: "static hosts", args: []string{"--static-hosts", "*.test=127.0.0.1"}, want: "--static-hosts"},
		{name: "static hosts in the environment", env: []string{"EGRESSD_STATIC_HOSTS=a.test=not-an-ip"}, want: "--static-hosts"},
		{name: "sandbox no proxy", args: []string{"--sandbox-no-proxy", "ok.example,*"}, want: "--sandbox-no-proxy"},
		{name: "data dir under a file", args: []string{"--data-dir", filepath.Join(notDir, "data")}, want: "--data-dir " + filepath.Join(notDir, "data") + ": cannot be created: " + notDir + ": not a directory"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			if c.asUser && os.Geteuid() == 0 {
				t.Skip("root reads any file")
			}
			dir := filepath.Join(t.TempDir(), "data")
			args := append([]string{"serve", "--data-dir", dir, "--admin-listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", "--proxy-listen", "127.0.0.1:0"}, c.args...)
			refused(t, egressd(t, c.env, args...), c.want)
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Fatalf("the data dir exists after a refusal (stat: %v)", err)
			}
		})
	}
}

// On a data dir that exists (empty, or set up by init), a refusal leaves
// nothing new in it and changes nothing.
func TestServeRefusesExistingDataDir(t *testing.T) {
	t.Parallel()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { busy.Close() })
	otherKey := filepath.Join(t.TempDir(), "other.key")
	if err := os.WriteFile(otherKey, []byte(strings.Repeat("cd", 32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(t.TempDir(), "empty")
	if err := os.Mkdir(empty, 0o700); err != nil {
		t.Fatal(err)
	}
	initialised := filepath.Join(t.TempDir(), "data")
	mustInit(t, nil, "--data-dir", initialised)

	for _, c := range []struct {
		name, dir string
		args      []string
		want      string
	}{
		{"empty dir, busy port", empty, []string{"--proxy-listen", busy.Addr().String()}, "--proxy-listen"},
		{"empty dir, no upstream CA", empty, []string{"--upstream-ca", filepath.Join(empty, "none.pem")}, "--upstream-ca"},
		{"set-up dir, busy port", initialised, []string{"--admin-listen", busy.Addr().String()}, "--admin-listen"},
		{"set-up dir, bad providers", initialised, []string{"--oauth-providers", otherKey}, "--oauth-providers"},
		{"set-up dir, another master key", initialised, []string{"--master-key-file", otherKey}, "does not open this vault"},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := dirState(t, c.dir)
			args := append([]string{"serve", "--data-dir", c.dir, "--admin-listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", "--proxy-listen", "127.0.0.1:0"}, c.args...)
			refused(t, egressd(t, nil, args...), c.want)
			if after := dirState(t, c.dir); after != before {
				t.Fatalf("the data dir changed:\nbefore:\n%s\nafter:\n%s", before, after)
			}
		})
	}
}
