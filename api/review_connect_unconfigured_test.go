package api_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// Review regression: a connect link on a server without OAuth (restarted without it) answered a JSON error naming the product to the end-user; it must be an unbranded page.
func TestReviewConnectLinkWithoutOAuthIsAPage(t *testing.T) {
	h := newHarness(t)
	for _, method := range []string{"GET", "POST"} {
		req, _ := http.NewRequest(method, h.http.URL+"/connect/oaf_0123456789abcdefghij", strings.NewReader("token=x"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		body := string(raw)
		if resp.StatusCode != http.StatusNotImplemented || !strings.Contains(body, `id="connect-error"`) {
			t.Fatalf("%s: %d %s", method, resp.StatusCode, body)
		}
		checkConnectPage(t, method, resp, body)
		if len(resp.Cookies()) != 0 {
			t.Fatalf("%s: cookies %v", method, resp.Header["Set-Cookie"])
		}
	}
}
