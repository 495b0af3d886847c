package vault

import (
	"math"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
)

// appendJSON appends r as encoding/json would marshal it, byte for byte
// (TestAuditRowJSON and FuzzAuditRowJSON hold it to that), without
// reflection: every proxied request encodes two rows, and json.Marshal was
// 4% of the proxy's CPU under load.
func (r *AuditRow) appendJSON(b []byte) []byte {
	b = append(b, `{"id":`...)
	b = appendJSONString(b, r.ID)
	b = append(b, `,"time":`...)
	b = appendJSONTime(b, r.Time)
	b = append(b, `,"kind":`...)
	b = appendJSONString(b, r.Kind)
	b = append(b, `,"tenant_id":`...)
	b = appendJSONString(b, r.TenantID)
	b = appendOptString(b, `,"workspace_id":`, r.WorkspaceID)
	b = appendOptString(b, `,"owner_user_id":`, r.OwnerUserID)
	b = appendOptString(b, `,"external_user_id":`, r.ExternalUserID)
	b = appendOptString(b, `,"external_workspace_id":`, r.ExternalWorkspaceID)
	b = appendOptString(b, `,"external_project_id":`, r.ExternalProjectID)
	b = appendOptString(b, `,"sandbox_id":`, r.SandboxID)
	b = appendOptString(b, `,"actor_kind":`, r.ActorKind)
	b = appendOptString(b, `,"actor_id":`, r.ActorID)
	b = appendOptString(b, `,"action":`, r.Action)
	b = appendOptString(b, `,"secret_id":`, r.SecretID)
	b = appendOptString(b, `,"secret_name":`, r.SecretName)
	b = appendOptInt(b, `,"secret_version":`, r.SecretVersion)
	b = appendOptString(b, `,"level":`, r.Level)
	b = appendOptString(b, `,"host":`, r.Host)
	b = appendOptString(b, `,"method":`, r.Method)
	b = appendOptString(b, `,"path":`, r.Path)
	b = appendOptInt(b, `,"status":`, r.Status)
	b = appendOptString(b, `,"outcome":`, r.Outcome)
	b = appendOptString(b, `,"reason":`, r.Reason)
	if r.DurationMS != 0 {
		b = append(b, `,"duration_ms":`...)
		b = appendJSONFloat(b, r.DurationMS)
	}
	if len(r.Uses) > 0 {
		b = append(b, `,"uses":[`...)
		for i := range r.Uses {
			if i > 0 {
				b = append(b, ',')
			}
			b = r.Uses[i].appendJSON(b)
		}
		b = append(b, ']')
	}
	if len(r.Details) > 0 {
		b = append(b, `,"details":{`...)
		keys := make([]string, 0, len(r.Details))
		for k := range r.Details {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, k)
			b = append(b, ':')
			b = appendJSONString(b, r.Details[k])
		}
		b = append(b, '}')
	}
	return append(b, '}')
}

func (u *AuditUse) appendJSON(b []byte) []byte {
	b = append(b, `{"name":`...)
	b = appendJSONString(b, u.Name)
	b = appendOptString(b, `,"secret_id":`, u.SecretID)
	b = appendOptInt(b, `,"version":`, u.Version)
	b = appendOptString(b, `,"level":`, u.Level)
	b = appendOptString(b, `,"location":`, u.Location)
	b = appendOptString(b, `,"action":`, u.Action)
	b = appendOptString(b, `,"reason":`, u.Reason)
	if u.Leak {
		b = append(b, `,"leak":true`...)
	}
	b = appendOptString(b, `,"leak_sandbox_id":`, u.LeakSandboxID)
	return append(b, '}')
}

func appendOptString(b []byte, key, v string) []byte {
	if v == "" {
		return b
	}
	return appendJSONString(append(b, key...), v)
}

func appendOptInt(b []byte, key string, v int) []byte {
	if v == 0 {
		return b
	}
	return strconv.AppendInt(append(b, key...), int64(v), 10)
}

// appendJSONTime is time.Time's MarshalJSON for times AppendAudit accepts
// (years 1970 to 2200, UTC).
func appendJSONTime(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

// appendJSONFloat formats f as encoding/json does: the shortest 'f' form,
// or 'e' for very small or large magnitudes with a two-digit exponent.
// NaN and infinities have no JSON form; they are written as 0 (rows
// never carry them: DurationMS is a measured duration).
func appendJSONFloat(b []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(b, '0')
	}
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// clean up e-09 to e-9
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

const hexDigits = "0123456789abcdef"

// appendJSONString quotes s as encoding/json does by default: <, > and &
// escaped for HTML, U+2028 and U+2029 escaped, control characters as
// \u00XX (or their short forms), invalid UTF-8 as U+FFFD.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
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
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
