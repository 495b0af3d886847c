package api_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/egressd/egressd/ui"
)

// The dashboard is served by the API server under /ui/ without a bearer
// token (it holds no data; its script calls the API with one).
func TestDashboardMounted(t *testing.T) {
	h := newHarness(t)
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.Get(h.http.URL + "/ui")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 3 || resp.Header.Get("Location") != "/ui/" {
		t.Fatalf("/ui: %d to %q, want a redirect to /ui/", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, err = http.Get(h.http.URL + "/ui/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Security-Policy") != ui.DashboardCSP ||
		!strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("/ui/: %d %v", resp.StatusCode, resp.Header)
	}
	// The API around it is unchanged: unknown paths are still JSON 404s.
	code, body := h.do("GET", "/uix", "", nil)
	checkRefusal(t, code, body, 404, "no such endpoint")
}
