package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"regexp"
	"strings"
)

// DefaultStoreSchema is the PostgreSQL schema of --store-schema.
const DefaultStoreSchema = "egressd"

// Store is the value of --store (EGRESSD_STORE): where the vault lives.
// Empty or "bolt" is the bbolt file in the data dir, the embedded
// default; a PostgreSQL DSN (a postgres:// or postgresql:// URL, or a
// libpq key=value string such as "host=db dbname=egressd user=egressd")
// is a store that several replicas share.
//
// A DSN may hold a password, so a Store never prints it: String, GoString,
// Format, LogValue and MarshalJSON show Redacted, and flag's -h shows no default. DSN
// returns the whole text, for the connection only. Set never fails (the
// flag package would quote the value in its error); Check says what is
// wrong, naming the value without its password.
type Store string

// Set takes the flag's value as it is.
func (s *Store) Set(v string) error {
	*s = Store(strings.TrimSpace(v))
	return nil
}

// Postgres reports whether the store is a PostgreSQL DSN.
func (s Store) Postgres() bool { return s != "" && s != "bolt" }

// DSN is the PostgreSQL DSN, password included: only for connecting.
func (s Store) DSN() string { return string(s) }

// Check accepts empty, "bolt", and what looks like a PostgreSQL DSN;
// whether it parses and reaches a server is for the connection to say.
func (s Store) Check() error {
	if !s.Postgres() || isPostgresURL(string(s)) || isKeyValueDSN(string(s)) {
		return nil
	}
	return fmt.Errorf("--store %s: want bolt, a postgres:// URL or a libpq key=value DSN (host=... dbname=...)", s.Redacted())
}

// Redacted is the store with its password masked: "bolt", or the DSN with
// xxxxx for the password (of the URL's user info, its password parameter,
// or the key=value password). Text that does not parse as a DSN is not
// shown at all.
func (s Store) Redacted() string {
	switch {
	case !s.Postgres():
		return "bolt"
	case isPostgresURL(string(s)):
		return redactURL(string(s))
	case isKeyValueDSN(string(s)):
		return redactKeyValue(string(s))
	}
	return "(not a DSN; not shown)"
}

// String is Redacted: flag's -h and fmt show no password.
func (s Store) String() string { return s.Redacted() }

// GoString is Redacted.
func (s Store) GoString() string { return s.Redacted() }

// Format is Redacted whatever the verb.
func (s Store) Format(f fmt.State, _ rune) { fmt.Fprint(f, s.Redacted()) }

// LogValue is Redacted.
func (s Store) LogValue() slog.Value { return slog.StringValue(s.Redacted()) }

// MarshalJSON is Redacted, as a JSON string.
func (s Store) MarshalJSON() ([]byte, error) { return json.Marshal(s.Redacted()) }

const redactedPassword = "xxxxx"

func isPostgresURL(s string) bool {
	l := strings.ToLower(s)
	return strings.HasPrefix(l, "postgres://") || strings.HasPrefix(l, "postgresql://")
}

// kvKey matches the first key of a libpq key=value string.
var kvKey = regexp.MustCompile(`^[A-Za-z_]+\s*=`)

func isKeyValueDSN(s string) bool { return kvKey.MatchString(s) }

// redactURL masks the password of the user info and a password parameter.
// A URL that does not parse is not shown: its text may hold the password
// anywhere.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return s[:strings.Index(s, "://")+3] + "(does not parse; not shown)"
	}
	if u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), redactedPassword)
		}
	}
	q := u.Query()
	if q.Has("password") {
		q.Set("password", redactedPassword)
		u.RawQuery = q.Encode()
	}
	return u.String()
}

// redactKeyValue masks the value of the password key of a libpq key=value
// string (values bare or in single quotes with \' and \\ escapes).
func redactKeyValue(s string) string {
	pairs, err := splitKeyValue(s)
	if err != nil {
		return "(key=value DSN that does not parse; not shown)"
	}
	out := make([]string, 0, len(pairs))
	for _, p := range pairs {
		v := p[1]
		if strings.EqualFold(p[0], "password") {
			v = redactedPassword
		} else if v == "" || strings.ContainsAny(v, ` '\`) {
			v = "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
		}
		out = append(out, p[0]+"="+v)
	}
	return strings.Join(out, " ")
}

// splitKeyValue parses a libpq key=value string into its pairs.
func splitKeyValue(s string) ([][2]string, error) {
	var out [][2]string
	i := 0
	skip := func() {
		for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r') {
			i++
		}
	}
	for {
		skip()
		if i == len(s) {
			return out, nil
		}
		start := i
		for i < len(s) && s[i] != '=' && s[i] != ' ' && s[i] != '\t' {
			i++
		}
		key := s[start:i]
		skip()
		if key == "" || i == len(s) || s[i] != '=' {
			return nil, errors.New("want key=value")
		}
		i++
		skip()
		var v strings.Builder
		if i < len(s) && s[i] == '\'' {
			i++
			closed := false
			for i < len(s) {
				c := s[i]
				if c == '\\' && i+1 < len(s) {
					v.WriteByte(s[i+1])
					i += 2
					continue
				}
				i++
				if c == '\'' {
					closed = true
					break
				}
				v.WriteByte(c)
			}
			if !closed {
				return nil, errors.New("unterminated quote")
			}
		} else {
			for i < len(s) && s[i] != ' ' && s[i] != '\t' && s[i] != '\n' && s[i] != '\r' {
				if s[i] == '\\' && i+1 < len(s) {
					i++
				}
				v.WriteByte(s[i])
				i++
			}
		}
		out = append(out, [2]string{key, v.String()})
	}
}
