package pgstore

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// No error of Open or Migrate quotes a DSN's password: not for a DSN that
// does not parse (pgx's own message would quote it, best-effort
// redacted), not for a server that cannot be reached or refuses it.
func TestErrorsHideThePassword(t *testing.T) {
	const pw = "s3cr3t-pw-never-shown"
	cases := []struct {
		name, dsn string
		bad       bool // ErrBadDSN
	}{
		{"URL with a bad port", "postgres://egressd:" + pw + "@db.invalid:notaport/egressd", true},
		{"URL with a bad escape", "postgres://egressd:" + pw + "%zz@db.invalid/egressd", true},
		{"key=value with a bad port", "host=db.invalid port=notaport user=egressd password=" + pw, true},
		{"key=value unquoted", "host=db.invalid password='" + pw, true},
		{"unknown pool setting", "postgres://egressd:" + pw + "@db.invalid/egressd?pool_max_conns=many", true},
		{"nothing listens", "host=127.0.0.1 port=1 user=egressd password=" + pw + " dbname=egressd connect_timeout=2", false},
		{"URL, nothing listens", "postgres://egressd:" + pw + "@127.0.0.1:1/egressd?connect_timeout=2", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, err := Open(ctx, tc.dsn, Options{})
			_, _, merr := Migrate(ctx, tc.dsn, Options{})
			for _, e := range []error{err, merr} {
				if e == nil {
					t.Fatal("no error")
				}
				if strings.Contains(e.Error(), pw) || strings.Contains(e.Error(), "s3cr3t") {
					t.Errorf("the error quotes the password: %v", e)
				}
				if tc.bad != errors.Is(e, ErrBadDSN) {
					t.Errorf("errors.Is(%v, ErrBadDSN) = %v, want %v", e, !tc.bad, tc.bad)
				}
			}
			t.Logf("%v", err)
		})
	}
}

// A password the server refuses is not quoted either.
func TestWrongPasswordNotQuoted(t *testing.T) {
	dsn := testDSN(t)
	if strings.Contains(dsn, "://") {
		t.Skip("needs a key=value DSN to change its password")
	}
	const pw = "wrong-s3cr3t-pw"
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := Open(ctx, dsn+" password="+pw, Options{Schema: freshSchema(t, dsn)})
	if err == nil {
		t.Skip("the server accepts any password here (trust authentication)")
	}
	if strings.Contains(err.Error(), pw) {
		t.Errorf("the error quotes the password: %v", err)
	}
	t.Logf("%v", err)
}

func TestSchemaNameChecked(t *testing.T) {
	for _, s := range []string{strings.Repeat("s", 64), "a\x00b", "\xff"} {
		if _, err := Open(context.Background(), "host=127.0.0.1 port=1", Options{Schema: s}); err == nil || !strings.Contains(err.Error(), "schema name") {
			t.Errorf("Open with schema %q: %v, want a refusal of the name", s, err)
		}
	}
}
