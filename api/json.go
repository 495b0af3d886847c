package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strings"

	"github.com/egressd/egressd/vault"
)

// MaxBodyBytes bounds every request body; a larger one answers 413.
const MaxBodyBytes = 1 << 20

// decode reads one JSON object from the request body into v. Unknown
// fields (also those differing only in case, which encoding/json would
// take), repeated fields, trailing data and bodies over MaxBodyBytes are
// refused. Its error messages name fields and offsets, never the content
// of the body, so a value sent by mistake is never echoed.
func decode(w http.ResponseWriter, r *http.Request, v any) error {
	b, err := readBody(w, r)
	if err != nil {
		return err
	}
	return decodeBytes(b, v)
}

// decodeBytes is decode for a body read already.
func decodeBytes(b []byte, v any) error {
	if err := checkObject(b, v); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return decodeError(err, v)
	}
	return nil
}

// readBody reads the whole body, at most MaxBodyBytes of it.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return nil, errorf(ErrTooLarge, "%v", err)
	}
	if err != nil {
		return nil, errorf(ErrBadRequest, "reading the body: %v", err)
	}
	return b, nil
}

// checkObject checks the shape of a body: one JSON object whose keys are
// v's JSON field names spelled exactly, each at most once, and nothing
// after it.
func checkObject(b []byte, v any) error {
	known := fieldNames(v)
	dec := json.NewDecoder(bytes.NewReader(b))
	tok, err := dec.Token()
	if err != nil {
		return decodeError(err, v)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return errorf(ErrBadRequest, "want a JSON object")
	}
	seen := make(map[string]bool, len(known))
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return decodeError(midObject(err), v)
		}
		key, _ := tok.(string)
		if !slices.Contains(known, key) {
			return errorf(ErrBadRequest, "unknown field %s (known: %s)", safeField(key), knownFields(v))
		}
		if seen[key] {
			return errorf(ErrBadRequest, "field %q given twice", key)
		}
		seen[key] = true
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return decodeError(midObject(err), v)
		}
	}
	if _, err := dec.Token(); err != nil {
		return decodeError(midObject(err), v)
	}
	if _, err := dec.Token(); err != io.EOF {
		return errorf(ErrBadRequest, "trailing data after the JSON object")
	}
	return nil
}

// midObject reads an end of input inside an object as truncation.
func midObject(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// emptyBody accepts a request without a body, or with an empty JSON
// object, for endpoints that take no input.
func emptyBody(w http.ResponseWriter, r *http.Request) error {
	b, err := readBody(w, r)
	if err != nil || len(bytes.TrimSpace(b)) == 0 {
		return err
	}
	return checkObject(b, &struct{}{})
}

// decodeError turns what encoding/json says into a message that does not
// quote the input.
func decodeError(err error, v any) error {
	var (
		tooBig *http.MaxBytesError
		syntax *json.SyntaxError
		typ    *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &tooBig):
		return errorf(ErrTooLarge, "%v", err)
	case err == io.EOF:
		return errorf(ErrBadRequest, "empty body, want a JSON object")
	case err == io.ErrUnexpectedEOF:
		return errorf(ErrBadRequest, "truncated JSON body")
	case errors.As(err, &syntax):
		return errorf(ErrBadRequest, "malformed JSON at byte %d", syntax.Offset)
	case errors.Is(err, vault.ErrInvalid):
		// A field's own check (vault.TTL): it names the field, never the input.
		return err
	case errors.As(err, &typ):
		if typ.Field == "" {
			return errorf(ErrBadRequest, "want a JSON object, got %s", typ.Value)
		}
		top, _, _ := strings.Cut(typ.Field, ".")
		return errorf(ErrBadRequest, "field %s: want %s, got %s", safeField(top), jsonKind(typ.Type.String()), typ.Value)
	}
	// encoding/json reports an unknown field as `json: unknown field "x"`.
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return errorf(ErrBadRequest, "unknown field %s (known: %s)", safeField(strings.Trim(name, `"`)), knownFields(v))
	}
	// Anything else (a bad time in expires_at, a bad level) may quote the
	// input: say only that a value was malformed.
	return errorf(ErrBadRequest, "a field holds a malformed value (times are RFC 3339)")
}

// safeField quotes a field name from the input only if it looks like one
// of ours (snake_case letters): a value pasted where a key belongs, or a
// user's metadata key, is not echoed.
func safeField(name string) string {
	if len(name) == 0 || len(name) > 40 {
		return "(not shown)"
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; !(c >= 'a' && c <= 'z' || c == '_') {
			return "(not shown)"
		}
	}
	return fmt.Sprintf("%q", name)
}

// fieldNames lists the JSON fields of the struct v points to.
func fieldNames(v any) []string {
	t := reflect.TypeOf(v)
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil || t.Kind() != reflect.Struct {
		return nil
	}
	var names []string
	for i := 0; i < t.NumField(); i++ {
		if name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ","); name != "" && name != "-" {
			names = append(names, name)
		}
	}
	return names
}

// knownFields is fieldNames for a message.
func knownFields(v any) string {
	if names := fieldNames(v); len(names) > 0 {
		return strings.Join(names, ", ")
	}
	return "none"
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
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	// "<proxy-token>" and "<api key>" read better unescaped; answers are
	// served as application/json with nosniff, never as HTML.
	enc.SetEscapeHTML(false)
	b := []byte(`{"error":{"code":"internal","message":"internal error; the server log has the cause"}}` + "\n")
	if err := enc.Encode(v); err == nil {
		b = buf.Bytes()
	} else {
		status = http.StatusInternalServerError
	}
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(b)
}

// checkQuery refuses query parameters the route does not know, repeated
// ones, and a query string that does not parse.
func checkQuery(r *http.Request, allowed []string) error {
	if r.URL.RawQuery == "" {
		return nil
	}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return errorf(ErrBadRequest, "malformed query string")
	}
	for k, vs := range q {
		if !slices.Contains(allowed, k) {
			if len(allowed) == 0 {
				return errorf(ErrBadRequest, "this endpoint takes no query parameters, got %s", safeField(k))
			}
			return errorf(ErrBadRequest, "unknown query parameter %s (known: %s)", safeField(k), strings.Join(allowed, ", "))
		}
		if len(vs) > 1 {
			return errorf(ErrBadRequest, "query parameter %q given %d times", k, len(vs))
		}
	}
	return nil
}
