package api_test

import (
	"testing"
	"time"

	"github.com/egressd/egressd/audit"
)

// Regression: a formula after leading whitespace (or a line feed, or a full-width sign) escaped the CSV export's defusing (CSV injection).
func TestReviewDashCSVFormulaAfterWhitespace(t *testing.T) {
	h := newHarness(t)
	at := time.Now().UTC()
	cells := map[string]string{
		"reason": " =HYPERLINK(\"http://x\")", "path": "\n=1+1", "method": "  @SUM(A1)", "host": "\u00a0+1",
		"secret_name": "\uff1dcmd", "action": "\n\t-1", "level": "ok = fine",
	}
	row := audit.Row{ID: audit.NewID(at), Time: at, Kind: audit.KindRequest, TenantID: h.tenant.ID, Outcome: "denied",
		Reason: cells["reason"], Path: cells["path"], Method: cells["method"], Host: cells["host"], SecretName: cells["secret_name"],
		Action: cells["action"], Level: cells["level"]}
	if err := h.store.AppendAudit(row); err != nil {
		t.Fatal(err)
	}
	got := exportedCSVRow(t, h, row.ID)
	for name, v := range cells {
		want := "'" + v
		if name == "level" {
			want = v // text that merely holds an = is left alone
		}
		if got[name] != want {
			t.Errorf("%s: %q, want %q", name, got[name], want)
		}
	}
}
