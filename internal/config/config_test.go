package config

import (
	"bytes"
	"flag"
	"strings"
	"testing"
	"time"
)

func TestEnvName(t *testing.T) {
	for in, want := range map[string]string{
		"data-dir":            "EGRESSD_DATA_DIR",
		"admin-listen":        "EGRESSD_ADMIN_LISTEN",
		"new-master-key-file": "EGRESSD_NEW_MASTER_KEY_FILE",
	} {
		if got := EnvName(in); got != want {
			t.Errorf("EnvName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestApplyEnvFlagWins(t *testing.T) {
	env := map[string]string{
		"EGRESSD_DATA_DIR":     "/from/env",
		"EGRESSD_ADMIN_LISTEN": "127.0.0.1:1",
		"EGRESSD_LOG_LEVEL":    "", // empty counts as unset
	}
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	dataDir := fs.String("data-dir", "def", "")
	admin := fs.String("admin-listen", "def", "")
	level := fs.String("log-level", "info", "")
	other := fs.String("other", "def", "")
	if err := fs.Parse([]string{"--admin-listen", "127.0.0.1:2"}); err != nil {
		t.Fatal(err)
	}
	if err := ApplyEnv(fs, func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	if *dataDir != "/from/env" || *admin != "127.0.0.1:2" || *level != "info" || *other != "def" {
		t.Fatalf("got data-dir %q admin %q level %q other %q", *dataDir, *admin, *level, *other)
	}
	if !IsSet(fs, "data-dir") || !IsSet(fs, "admin-listen") || IsSet(fs, "other") {
		t.Fatal("IsSet does not see flags set by the environment")
	}
}

func TestApplyEnvBadValue(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.Duration("shutdown-timeout", 0, "")
	err := ApplyEnv(fs, func(k string) string { return map[string]string{"EGRESSD_SHUTDOWN_TIMEOUT": "soon"}[k] })
	if err == nil || !strings.Contains(err.Error(), "EGRESSD_SHUTDOWN_TIMEOUT") {
		t.Fatalf("err = %v, want one naming the variable", err)
	}
}

func TestServeCheckDefaults(t *testing.T) {
	s := Serve{DataDir: "/d"}
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
	if s.MasterKeyFile != "/d/master.key" || s.ProxyURL != "http://localhost:8080" || s.AdminListen != DefaultAdminListen ||
		s.MetricsListen != DefaultMetricsListen || s.CABundlePath != DefaultCABundlePath || s.ShutdownTimeout != DefaultShutdownTimeout {
		t.Fatalf("defaults: %+v", s)
	}
	s = Serve{ProxyListen: "0.0.0.0:3128"}
	if err := s.Check(); err != nil || s.ProxyURL != "http://localhost:3128" {
		t.Fatalf("proxy url %q, err %v", s.ProxyURL, err)
	}
	if s.Audit != "journal" {
		t.Fatalf("audit mode %q, want journal (the default)", s.Audit)
	}
	for _, mode := range []string{"sync", "journal", "async"} {
		if s := (Serve{Audit: mode}); s.Check() != nil || s.Audit != mode {
			t.Fatalf("--audit %s refused", mode)
		}
	}
}

func TestServeCheckRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		s    Serve
		want string
	}{
		{"admin no port", Serve{AdminListen: "127.0.0.1"}, "--admin-listen"},
		{"proxy bad port", Serve{ProxyListen: ":http-alt"}, "--proxy-listen"},
		{"metrics port too big", Serve{MetricsListen: ":70000"}, "--metrics-listen"},
		{"proxy url scheme", Serve{ProxyURL: "ftp://x:1"}, "--proxy-url"},
		{"proxy url creds", Serve{ProxyURL: "http://u:p@x:1"}, "--proxy-url"},
		{"proxy url path", Serve{ProxyURL: "http://x:1/p"}, "--proxy-url"},
		{"public url query", Serve{PublicURL: "https://x/?a=1"}, "--public-url"},
		{"public url creds", Serve{PublicURL: "https://u:p@x/egressd"}, "--public-url"},
		{"public url dot-dot", Serve{PublicURL: "https://x/a/../b"}, "--public-url"},
		{"public url escape", Serve{PublicURL: "https://x/a%2Fb"}, "--public-url"},
		{"public url escaped letter", Serve{PublicURL: "https://x/%61"}, "--public-url"},
		{"public url empty segment", Serve{PublicURL: "https://x/a//b"}, "--public-url"},
		{"public url odd char", Serve{PublicURL: "https://x/a;b"}, "--public-url"},
		{"ca path relative", Serve{CABundlePath: "ca.pem"}, "--ca-bundle-path"},
		{"log level", Serve{LogLevel: "loud"}, "--log-level"},
		{"log format", Serve{LogFormat: "xml"}, "--log-format"},
		{"negative timeout", Serve{ShutdownTimeout: -1}, "--shutdown-timeout"},
		{"audit mode", Serve{Audit: "fsync"}, "--audit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.s.Check()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one naming %s", err, tc.want)
			}
		})
	}
}

func TestNewLogger(t *testing.T) {
	var buf bytes.Buffer
	log, err := NewLogger(&buf, "warn", "json")
	if err != nil {
		t.Fatal(err)
	}
	log.Info("hidden")
	log.Warn("shown")
	if strings.Contains(buf.String(), "hidden") || !strings.Contains(buf.String(), `"msg":"shown"`) {
		t.Fatalf("log: %s", buf.String())
	}
	buf.Reset()
	log, _ = NewLogger(&buf, "", "text")
	log.Info("plain")
	if !strings.Contains(buf.String(), "msg=plain") {
		t.Fatalf("text log: %s", buf.String())
	}
}

func TestAnnotateEnv(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.String("data-dir", "", "data")
	AnnotateEnv(fs)
	if u := fs.Lookup("data-dir").Usage; u != "data (env EGRESSD_DATA_DIR)" {
		t.Fatalf("usage %q", u)
	}
}

func TestParseSince(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		in   string
		want time.Time
		bad  bool
	}{
		{"", time.Time{}, false},
		{"7d", now.Add(-7 * 24 * time.Hour), false},
		{"30d", now.Add(-30 * 24 * time.Hour), false},
		{"90m", now.Add(-90 * time.Minute), false},
		{"2026-11-01T00:00:00Z", time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), false},
		{"-5d", time.Time{}, true},
		{"-1h", time.Time{}, true},
		{"yesterday", time.Time{}, true},
		{"7x", time.Time{}, true},
	} {
		got, err := ParseSince(c.in, now)
		if (err != nil) != c.bad || !got.Equal(c.want) {
			t.Errorf("ParseSince(%q) = %v, %v", c.in, got, err)
		}
	}
}

// A public URL may carry a path prefix (a proxy in front serves egressd
// under it): the Connect page's links and cookie paths stay under it.
func TestServeCheckPublicURLPrefix(t *testing.T) {
	for _, u := range []string{"https://id.example.com", "https://id.example.com/", "https://example.com/egressd", "https://example.com/tools/egress-d_1.0/", "http://127.0.0.1:8081/x"} {
		s := Serve{PublicURL: u}
		if err := s.Check(); err != nil {
			t.Errorf("%s: %v", u, err)
		}
	}
}
