package audit

import (
	"time"
)

// Bounds of Summarize.
const (
	// MaxSummaryBuckets is the most time buckets one summary holds.
	MaxSummaryBuckets = 1000
	// MaxSummaryBucket is the widest bucket (3650 days): with the audit
	// log's times (1970 to 2200), every difference of times a summary
	// takes stays far inside a time.Duration, so its bucket math cannot
	// overflow.
	MaxSummaryBucket = 3650 * 24 * time.Hour
	// MaxSummaryRows is the most request rows one summary counts.
	MaxSummaryRows = 100000
	// maxSummaryPages bounds the pages of Query one summary reads,
	// each reading at most auditScanRows log entries, so a filter that
	// matches few rows of a long log stops too.
	maxSummaryPages = 25
)

// Summary counts a tenant's request rows over time, by outcome and
// by the level of the walk that resolved the request's secret. It holds
// counts only: no ids, no paths, never a value.
type Summary struct {
	// Since (inclusive) and Until (exclusive) are the window asked for.
	Since time.Time `json:"since"`
	Until time.Time `json:"until"`
	// Bucket is each bucket's width; buckets start at multiples of it
	// (UTC), the first at or before Since.
	Bucket        time.Duration `json:"-"`
	BucketSeconds int64         `json:"bucket_seconds"`
	Buckets       []Bucket      `json:"buckets"`
	// Total counts every row counted, by outcome and level.
	Total Counts `json:"total"`
	// Truncated says the summary stopped before the start of the window
	// because it reached MaxSummaryRows rows or its bound on entries
	// read; then rows older than CompleteSince were not counted.
	Truncated     bool       `json:"truncated"`
	CompleteSince *time.Time `json:"complete_since,omitempty"`
	// MaxRows is MaxSummaryRows, for the reader of a truncated answer.
	MaxRows int `json:"max_rows"`
}

// Bucket is one time bucket of an Summary.
type Bucket struct {
	Start time.Time `json:"start"`
	Counts
}

// Counts are request rows counted, in all and by outcome and level.
// A row without an outcome counts as "unknown", one that resolved no
// secret as level "none".
type Counts struct {
	Requests int            `json:"requests"`
	Outcomes map[string]int `json:"outcomes"`
	Levels   map[string]int `json:"levels"`
}

// summaryFields are the fields a summary counts (with the time and
// those its filter matches on): its rows are read with these only.
const summaryFields = 1<<binKind | 1<<binOutcome | 1<<binLevel

func (c *Counts) add(r *Row) {
	if c.Outcomes == nil {
		c.Outcomes, c.Levels = map[string]int{}, map[string]int{}
	}
	outcome, level := r.Outcome, r.Level
	if outcome == "" {
		outcome = "unknown"
	}
	if level == "" {
		level = "none"
	}
	c.Requests++
	c.Outcomes[outcome]++
	c.Levels[level]++
}

// Summarize counts the tenant's request rows that match f (its Kind,
// Limit and Cursor are ignored) in buckets of width bucket between
// f.Since and f.Until, which are required. The work is bounded: at most
// MaxSummaryRows rows counted and a fixed number of log entries read,
// newest first, in short read transactions; a summary that stops early
// says so (Truncated, CompleteSince).
func (l *Log) Summarize(tenantID string, f Filter, bucket time.Duration) (Summary, error) {
	return l.summarizeAudit(tenantID, f, bucket, summaryBounds{rows: MaxSummaryRows, pages: maxSummaryPages, perPage: auditScanRows})
}

// summaryBounds bound one summary's work: rows counted, pages read and
// log entries read per page.
type summaryBounds struct{ rows, pages, perPage int }

func (l *Log) summarizeAudit(tenantID string, f Filter, bucket time.Duration, lim summaryBounds) (Summary, error) {
	if f.Since.IsZero() || f.Until.IsZero() {
		return Summary{}, invalid("since", "a summary needs since and until")
	}
	if bucket < time.Second || bucket > MaxSummaryBucket {
		return Summary{}, invalid("bucket", "from one second to %d days", MaxSummaryBucket/(24*time.Hour))
	}
	// Checked before the bucket math: the times are then within 1970 to
	// 2200, so no difference below overflows.
	f.Kind, f.Cursor, f.Limit = KindRequest, "", MaxLimit
	if err := f.check(tenantID); err != nil {
		return Summary{}, err
	}
	since, until := f.Since.UTC(), f.Until.UTC()
	start := since.Truncate(bucket)
	n := int64((until.Sub(start) + bucket - 1) / bucket)
	if !since.Before(until) {
		n = 0
	}
	if n > MaxSummaryBuckets {
		return Summary{}, invalid("bucket", "%s over this window makes %d buckets, at most %d: take a wider bucket", bucket, n, MaxSummaryBuckets)
	}
	sum := Summary{
		Since: since, Until: until, Bucket: bucket, BucketSeconds: int64(bucket / time.Second),
		Buckets: make([]Bucket, n), MaxRows: lim.rows,
		Total: Counts{Outcomes: map[string]int{}, Levels: map[string]int{}},
	}
	for i := range sum.Buckets {
		sum.Buckets[i] = Bucket{Start: start.Add(time.Duration(i) * bucket),
			Counts: Counts{Outcomes: map[string]int{}, Levels: map[string]int{}}}
	}
	var oldest time.Time
	for page := 0; ; page++ {
		if page == lim.pages {
			sum.Truncated = true
			break
		}
		rows, next, err := l.queryAudit(tenantID, f, lim.perPage, summaryFields)
		if err != nil {
			return Summary{}, err
		}
		for i := range rows {
			r := &rows[i]
			if sum.Total.Requests == lim.rows {
				// Stop at this row: the ones counted are all newer.
				sum.Truncated = true
				next = ""
				break
			}
			b := int(r.Time.Sub(start) / bucket)
			if b < 0 || b >= len(sum.Buckets) {
				continue // outside the window: the filter keeps none
			}
			sum.Buckets[b].add(r)
			sum.Total.add(r)
			oldest = r.Time
		}
		if next == "" {
			break
		}
		f.Cursor = next
	}
	if sum.Truncated {
		t := oldest
		if t.IsZero() {
			t = until
		}
		sum.CompleteSince = &t
	}
	return sum, nil
}
