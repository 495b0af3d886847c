package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// MaxBodyBytes bounds every request body; a larger one answers 413.
const MaxBodyBytes = 1 << 20

// decode reads one JSON object from the request body into v. Unknown
// fields, trailing data and bodies over MaxBodyBytes are refused. Its error
// messages name fields and offsets, never the content of the body, so a
// value sent by mistake is never echoed.
func decode(w http.ResponseWriter, r *http.Request, v any) error {
	body := http.MaxBytesReader(w, r.Body, MaxBodyBytes)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return decodeError(err)
	}
	var extra json.RawMessage
	switch err := dec.Decode(&extra); {
	case err == io.EOF:
		return nil
	case err == nil:
		return fmt.Errorf("%w: trailing data after the JSON object", ErrBadRequest)
	default:
		if e := decodeError(err); errors.Is(e, ErrTooLarge) {
			return e
		}
		return fmt.Errorf("%w: trailing data after the JSON object", ErrBadRequest)
	}
}

// emptyBody accepts a request without a body, or with an empty JSON
// object, for endpoints that take no input.
func emptyBody(w http.ResponseWriter, r *http.Request) error {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return fmt.Errorf("%w: %w", ErrTooLarge, err)
	}
	if err != nil {
		return fmt.Errorf("%w: reading the body: %w", ErrBadRequest, err)
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return nil
	}
	r.Body = io.NopCloser(bytes.NewReader(b))
	return decode(w, r, &struct{}{})
}

// decodeError turns what encoding/json says into a message that does not
// quote the input.
func decodeError(err error) error {
	var (
		tooBig *http.MaxBytesError
		syntax *json.SyntaxError
		typ    *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &tooBig):
		return fmt.Errorf("%w: %w", ErrTooLarge, err)
	case err == io.EOF:
		return fmt.Errorf("%w: empty body, want a JSON object", ErrBadRequest)
	case err == io.ErrUnexpectedEOF:
		return fmt.Errorf("%w: truncated JSON body", ErrBadRequest)
	case errors.As(err, &syntax):
		return fmt.Errorf("%w: malformed JSON at byte %d", ErrBadRequest, syntax.Offset)
	case errors.As(err, &typ):
		if typ.Field == "" {
			return fmt.Errorf("%w: want a JSON object, got %s", ErrBadRequest, typ.Value)
		}
		return fmt.Errorf("%w: field %s: want %s, got %s", ErrBadRequest, safeField(typ.Field), jsonKind(typ.Type.String()), typ.Value)
	}
	// encoding/json reports an unknown field as `json: unknown field "x"`.
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return fmt.Errorf("%w: unknown field %s", ErrBadRequest, safeField(strings.Trim(name, `"`)))
	}
	// Anything else (a bad time in expires_at, a bad level) may quote the
	// input: say only that a value was malformed.
	return fmt.Errorf("%w: a field holds a malformed value (times are RFC 3339)", ErrBadRequest)
}

// safeField quotes a field name from the input only if it looks like one;
// a value pasted where a key belongs is not echoed.
func safeField(name string) string {
	if len(name) == 0 || len(name) > 64 {
		return "(unnamed)"
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.') {
			return "(unnamed)"
		}
	}
	return fmt.Sprintf("%q", name)
}

// jsonKind names a Go type the way a JSON author thinks of it.
func jsonKind(goType string) string {
	switch {
	case strings.HasPrefix(goType, "[]"):
		return "an array"
	case strings.HasPrefix(goType, "map["):
		return "an object"
	case goType == "bool":
		return "a boolean"
	case strings.Contains(goType, "int"), strings.Contains(goType, "float"):
		return "a number"
	case goType == "time.Time":
		return "an RFC 3339 time"
	}
	return "a string"
}

// writeJSON answers with v as JSON. Answers can hold tokens shown once, so
// none of them may be cached.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"error":{"code":"internal","message":"internal error; the server log has the cause"}}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// checkQuery refuses query parameters the route does not know, repeated
// ones, and a query string that does not parse.
func checkQuery(r *http.Request, allowed []string) error {
	if r.URL.RawQuery == "" {
		return nil
	}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return fmt.Errorf("%w: malformed query string", ErrBadRequest)
	}
	for k, vs := range q {
		if !slices.Contains(allowed, k) {
			if len(allowed) == 0 {
				return fmt.Errorf("%w: this endpoint takes no query parameters, got %s", ErrBadRequest, safeField(k))
			}
			return fmt.Errorf("%w: unknown query parameter %s (known: %s)", ErrBadRequest, safeField(k), strings.Join(allowed, ", "))
		}
		if len(vs) > 1 {
			return fmt.Errorf("%w: query parameter %q given %d times", ErrBadRequest, k, len(vs))
		}
	}
	return nil
}
