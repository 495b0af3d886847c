package api

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/egressd/egressd/audit"
)

// auditSummaryParams are the query parameters of GET /api/v1/audit/summary.
var auditSummaryParams = []string{
	"since", "until", "bucket", "external_user_id", "external_workspace_id", "sandbox_id", "secret_id", "outcome",
}

// DefaultSummaryWindow is the window of a summary that names no since.
const DefaultSummaryWindow = 24 * time.Hour

// summaryTargetBuckets is about how many buckets an automatic bucket
// width makes.
const summaryTargetBuckets = 60

// summaryBuckets are the widths an automatic bucket picks from.
var summaryBuckets = []time.Duration{
	time.Minute, 5 * time.Minute, 15 * time.Minute, 30 * time.Minute, time.Hour, 3 * time.Hour,
	6 * time.Hour, 12 * time.Hour, 24 * time.Hour, 7 * 24 * time.Hour,
}

// summarizeAudit answers counts of proxied requests per time bucket, by
// outcome and by the level that resolved them, for the charts of the
// dashboard. since defaults to 24h before until, until to now; bucket is a
// width (90s, 5m, 1h, 1d) or empty for one that makes about 60 buckets.
// The work is bounded; a summary that stopped early says so (truncated,
// complete_since). A browser token counts only its own external user's
// rows.
func (s *Server) summarizeAudit(w http.ResponseWriter, r *http.Request, p *principal) error {
	q := r.URL.Query()
	now := s.now()
	f, err := auditFilter(q, now)
	if err != nil {
		return err
	}
	if err := ownRows(p, &f); err != nil {
		return err
	}
	if f.Until.IsZero() {
		f.Until = now.UTC()
	}
	if f.Since.IsZero() {
		f.Since = f.Until.Add(-DefaultSummaryWindow)
	}
	if !f.Since.Before(f.Until) {
		return errorf(ErrBadRequest, "until: must be after since")
	}
	bucket, err := summaryBucket(q.Get("bucket"), f.Until.Sub(f.Since))
	if err != nil {
		return err
	}
	sum, err := s.store.SummarizeAudit(p.tenant(), f, bucket)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, sum)
	return nil
}

// summaryBucket reads ?bucket=: a Go duration or a number of days ("1d"),
// at least a second; empty picks one for span.
func summaryBucket(v string, span time.Duration) (time.Duration, error) {
	if v == "" {
		for _, b := range summaryBuckets {
			if span/b <= summaryTargetBuckets {
				return b, nil
			}
		}
		days := (span/summaryTargetBuckets + 24*time.Hour - 1) / (24 * time.Hour)
		return days * 24 * time.Hour, nil
	}
	var d time.Duration
	if n, ok := strings.CutSuffix(v, "d"); ok {
		days, err := strconv.Atoi(n)
		if err != nil || days < 1 || days > 3650 {
			return 0, errorf(ErrBadRequest, "bucket: want a width such as 5m, 1h or 1d")
		}
		d = time.Duration(days) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(v); err != nil {
			return 0, errorf(ErrBadRequest, "bucket: want a width such as 5m, 1h or 1d")
		}
	}
	if d < time.Second {
		return 0, errorf(ErrBadRequest, "bucket: at least 1s")
	}
	if d > audit.MaxSummaryBucket {
		return 0, errorf(ErrBadRequest, "bucket: at most %dd", audit.MaxSummaryBucket/(24*time.Hour))
	}
	if span/d > audit.MaxSummaryBuckets {
		return 0, errorf(ErrBadRequest, "bucket: %s over this window makes more than %d buckets; take a wider bucket or a shorter window", d, audit.MaxSummaryBuckets)
	}
	return d, nil
}
