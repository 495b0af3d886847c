package config

import (
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

const pw = "s3cr3t-pw"

func TestStoreRedacted(t *testing.T) {
	for _, c := range []struct {
		in, want string
		pg       bool
	}{
		{"", "bolt", false},
		{"bolt", "bolt", false},
		{"postgres://egressd:" + pw + "@db:5432/egressd?sslmode=require", "postgres://egressd:xxxxx@db:5432/egressd?sslmode=require", true},
		{"postgresql://egressd@db/egressd", "postgresql://egressd@db/egressd", true},
		{"postgres://db/egressd?user=e&password=" + pw, "postgres://db/egressd?password=xxxxx&user=e", true},
		{"postgres://egressd:" + pw + "%zz@db/egressd", "postgres://(does not parse; not shown)", true},
		{"host=db port=5432 dbname=egressd user=egressd password=" + pw, "host=db port=5432 dbname=egressd user=egressd password=xxxxx", true},
		{"host=db password='" + pw + " with \\' quote' dbname=e", "host=db password=xxxxx dbname=e", true},
		{"host=db password = " + pw + " application_name='a b'", "host=db password=xxxxx application_name='a b'", true},
		{"host=db password='" + pw, "(key=value DSN that does not parse; not shown)", true},
	} {
		s := Store(c.in)
		if got := s.Redacted(); got != c.want {
			t.Errorf("%q: Redacted %q, want %q", c.in, got, c.want)
		}
		if s.Postgres() != c.pg {
			t.Errorf("%q: Postgres %v", c.in, s.Postgres())
		}
		if err := s.Check(); err != nil {
			t.Errorf("%q: %v", c.in, err)
		}
		type holder struct{ S Store }
		var logged strings.Builder
		slog.New(slog.NewTextHandler(&logged, nil)).Info("x", "store", s)
		js, err := json.Marshal(holder{s})
		if err != nil {
			t.Fatal(err)
		}
		for _, out := range []string{string(js), fmt.Sprint(s), fmt.Sprintf("%v %s %q %+v %#v %x", s, s, s, holder{s}, holder{s}, s), logged.String()} {
			if strings.Contains(out, pw) || strings.Contains(out, "s3cr3t") {
				t.Errorf("%q printed its password: %s", c.in, out)
			}
		}
	}
}

func TestStoreCheck(t *testing.T) {
	for _, in := range []string{"mysql://root:" + pw + "@db/x", pw, "/var/lib/egressd.db"} {
		err := Store(in).Check()
		if err == nil {
			t.Errorf("%q accepted", in)
			continue
		}
		if strings.Contains(err.Error(), pw) || strings.Contains(err.Error(), "s3cr3t") {
			t.Errorf("%q: the error quotes the value: %v", in, err)
		}
		if !strings.Contains(err.Error(), "--store") {
			t.Errorf("%q: the error does not name --store: %v", in, err)
		}
	}
}

// The flag's help, its parse and its variable never show the password.
func TestStoreFlag(t *testing.T) {
	var s Store
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.Var(&s, "store", "where the vault lives")
	AnnotateEnv(fs)
	var out strings.Builder
	fs.SetOutput(&out)
	if err := fs.Parse([]string{"--store", "postgres://e:" + pw + "@db/e"}); err != nil {
		t.Fatal(err)
	}
	fs.PrintDefaults()
	if s.DSN() != "postgres://e:"+pw+"@db/e" {
		t.Fatalf("DSN %q", s.DSN())
	}
	fs.VisitAll(func(f *flag.Flag) { fmt.Fprintf(&out, "%s=%s default %s\n", f.Name, f.Value, f.DefValue) })
	if strings.Contains(out.String(), pw) {
		t.Fatalf("the flag printed its password:\n%s", out.String())
	}
	var env Store
	fs2 := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs2.Var(&env, "store", "")
	if err := ApplyEnv(fs2, func(k string) string {
		if k == "EGRESSD_STORE" {
			return " host=db password=" + pw + " "
		}
		return ""
	}); err != nil || env.DSN() != "host=db password="+pw {
		t.Fatalf("from the environment: %v", err)
	}
}
