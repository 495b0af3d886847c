package proxy

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
)

// denyBody is the JSON a refused sandbox reads.
type denyBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func denyJSON(code, message string) []byte {
	var b denyBody
	b.Error.Code, b.Error.Message = code, message
	out, _ := json.Marshal(b)
	return append(out, '\n')
}

// errorResponse builds the proxy's own answer: JSON, the reason in
// X-Egress-Denied (or X-Egress-Error for upstream failures), and 407's
// Proxy-Authenticate challenge.
func errorResponse(req *http.Request, status int, reason Reason, fallback string) *http.Response {
	if reason == ReasonNone {
		return jsonError(req, status, "upstream_error", fallback, false)
	}
	return jsonError(req, status, reason.String(), reason.Message(), true)
}

// jsonError is an answer of egressd's own: code and message as JSON, the
// code in X-Egress-Denied (denied) or X-Egress-Error.
func jsonError(req *http.Request, status int, code, msg string, denied bool) *http.Response {
	body := denyJSON(code, msg)
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	if denied {
		h.Set("X-Egress-Denied", code)
	} else {
		h.Set("X-Egress-Error", code)
	}
	if status == http.StatusProxyAuthRequired {
		h.Set("Proxy-Authenticate", `Basic realm="egressd"`)
	}
	return &http.Response{
		StatusCode: status, Status: strconv.Itoa(status) + " " + http.StatusText(status),
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: h, Body: io.NopCloser(bytes.NewReader(body)), ContentLength: int64(len(body)),
		Request: req,
	}
}

func writeJSONError(w http.ResponseWriter, status int, code, message string) {
	body := denyJSON(code, message)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	w.Write(body)
}
