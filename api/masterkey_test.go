package api

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/egressd/egressd/vault"
)

// A write on a replica that lacks the key its shared vault was rekeyed to
// is a 503 naming the cause (another replica can serve it), never a bare
// 500, and its answer names no key id.
func TestMasterKeyNotHeldIs503(t *testing.T) {
	err := fmt.Errorf("vault: %w (master key 3f0c9d1e27a4b8c6; this process holds b5e0a2c8f4adb33a)", vault.ErrMasterKeyNotHeld)
	status, code := classify(err)
	if status != http.StatusServiceUnavailable || code != "master_key_unavailable" {
		t.Fatalf("classify: %d %s", status, code)
	}
	if msg := message(err, status); !strings.Contains(msg, "master key") || strings.Contains(msg, "3f0c9d1e") || strings.Contains(msg, "b5e0a2c8") {
		t.Fatalf("message %q", msg)
	}
	if status, _ := classify(context.Canceled); message(context.Canceled, status) != "request canceled" {
		t.Fatal("a canceled request's message changed")
	}
}
