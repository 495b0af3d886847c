package logline

import (
	"strconv"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"
)

// The encoders below are log/slog's (Go 1.26, handler.go, json_handler.go
// and text_handler.go; BSD licence), which keeps them unexported. The
// equality tests and FuzzDecisionLineEqualsSlog hold them to slog's bytes.

// appendString appends s as slog's handler writes a string value: quoted
// and escaped in JSON; in text, bare unless it needs quoting.
func appendString(b []byte, json bool, s string) []byte {
	if json {
		b = append(b, '"')
		b = appendEscapedJSONString(b, s)
		return append(b, '"')
	}
	if needsQuoting(s) {
		return strconv.AppendQuote(b, s)
	}
	return append(b, s...)
}

// jsonSafe reports whether ASCII byte c stands for itself in a JSON string
// (encoding/json's safeSet: all but the control characters, '"' and '\').
func jsonSafe(c byte) bool {
	return c >= 0x20 && c != '"' && c != '\\'
}

const hex = "0123456789abcdef"

// appendEscapedJSONString escapes s for JSON as slog does (encoding/json's
// escaping without HTML escapes; invalid UTF-8 becomes \ufffd; U+2028
// and U+2029 are escaped) and appends it to b, unquoted.
func appendEscapedJSONString(b []byte, s string) []byte {
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if jsonSafe(c) {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	return append(b, s[start:]...)
}

// needsQuoting reports whether the text handler quotes s: when it is
// empty, or holds a space, '=', a byte JSON would escape (but '\'),
// invalid UTF-8, or a rune that is a space or unprintable.
func needsQuoting(s string) bool {
	if len(s) == 0 {
		return true
	}
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c != '\\' && (c == ' ' || c == '=' || !jsonSafe(c)) {
				return true
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError || unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return true
		}
		i += size
	}
	return false
}

// stamp is one second of one location as the line writes it, either side
// of the fraction.
type stamp struct {
	sec  int64
	loc  *time.Location
	date []byte // "2006-01-02T15:04:05"
	zone []byte // "Z07:00"
}

// lastStamp is the second the last line was written in: lines of the
// same second skip the calendar and the zone lookup.
var lastStamp atomic.Pointer[stamp]

// appendTime appends t, whose year is 0 to 9999, as slog writes a
// record's time: RFC 3339 with the nanoseconds less their trailing zeros
// (none, and no point, when zero) in JSON; with exactly three digits of
// milliseconds in text.
func appendTime(b []byte, json bool, t time.Time) []byte {
	sec, loc := t.Unix(), t.Location()
	s := lastStamp.Load()
	if s == nil || s.sec != sec || s.loc != loc {
		whole := time.Unix(sec, 0).In(loc).AppendFormat(nil, "2006-01-02T15:04:05Z07:00")
		s = &stamp{sec: sec, loc: loc, date: whole[:19], zone: whole[19:]}
		lastStamp.Store(s)
	}
	b = append(b, s.date...)
	ns := t.Nanosecond()
	if !json {
		ms := ns / 1e6
		b = append(b, '.', byte('0'+ms/100), byte('0'+ms/10%10), byte('0'+ms%10))
	} else if ns != 0 {
		var d [10]byte
		d[0] = '.'
		for i := 9; i >= 1; i-- {
			d[i] = byte('0' + ns%10)
			ns /= 10
		}
		n := len(d)
		for d[n-1] == '0' {
			n--
		}
		b = append(b, d[:n]...)
	}
	return append(b, s.zone...)
}
