package audit

import (
	"errors"
	"testing"
	"time"
)

// bruteSummary counts what SummarizeAudit should: request rows of tenant
// matching f, by bucket of width b starting at f.Since truncated to b.
func bruteSummary(rows []Row, tenant string, f Filter, b time.Duration) (total int, perBucket map[int]map[string]int) {
	f.Kind = KindRequest
	start := f.Since.Truncate(b)
	perBucket = map[int]map[string]int{}
	for _, r := range bruteAudit(rows, tenant, f) {
		i := int(r.Time.Sub(start) / b)
		if perBucket[i] == nil {
			perBucket[i] = map[string]int{}
		}
		o := r.Outcome
		if o == "" {
			o = "unknown"
		}
		perBucket[i][o]++
		total++
	}
	return total, perBucket
}

func TestSummarizeAuditMatchesBrute(t *testing.T) {
	s := openTest(t)
	rows := auditFixture(t, s, 3000)
	window := Filter{Since: auditBase.Add(17 * time.Second), Until: auditBase.Add(300 * time.Second)}
	cases := []struct {
		name   string
		f      func(Filter) Filter
		bucket time.Duration
	}{
		{"all", func(f Filter) Filter { return f }, 10 * time.Second},
		{"one second buckets", func(f Filter) Filter { return f }, time.Second},
		{"external user", func(f Filter) Filter { f.ExternalUserID = "eu2"; return f }, time.Minute},
		{"sandbox and outcome", func(f Filter) Filter { f.SandboxID, f.Outcome = "sbx_3", "denied"; return f }, 30 * time.Second},
		{"secret (also in uses)", func(f Filter) Filter { f.SecretID = "sec_2"; return f }, time.Hour},
		{"kind is ignored", func(f Filter) Filter { f.Kind = KindAdmin; return f }, time.Minute},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := c.f(window)
			got, err := s.Summarize("ten_a", f, c.bucket)
			if err != nil {
				t.Fatal(err)
			}
			total, per := bruteSummary(rows, "ten_a", f, c.bucket)
			if total == 0 {
				t.Fatal("fixture matches nothing")
			}
			if got.Total.Requests != total || got.Truncated || got.CompleteSince != nil {
				t.Fatalf("total %d truncated %v, want %d and not truncated", got.Total.Requests, got.Truncated, total)
			}
			sumLevels := 0
			for i, b := range got.Buckets {
				if want := f.Since.Truncate(c.bucket).Add(time.Duration(i) * c.bucket); !b.Start.Equal(want) {
					t.Fatalf("bucket %d starts %v, want %v", i, b.Start, want)
				}
				n := 0
				for o, k := range b.Outcomes {
					if per[i][o] != k {
						t.Errorf("bucket %d outcome %s: %d, want %d", i, o, k, per[i][o])
					}
					n += k
				}
				if n != b.Requests || len(b.Outcomes) != len(per[i]) {
					t.Errorf("bucket %d: %d requests, outcomes %v, want %v", i, b.Requests, b.Outcomes, per[i])
				}
				sumLevels += b.Levels["none"]
			}
			if sumLevels != total {
				t.Errorf("levels: %d rows counted as none, want %d (the fixture has no levels)", sumLevels, total)
			}
			if last := got.Buckets[len(got.Buckets)-1].Start; !last.Before(f.Until) || !last.Add(c.bucket).After(f.Until.Add(-time.Nanosecond)) {
				t.Errorf("last bucket starts %v for until %v", last, f.Until)
			}
		})
	}
}

func TestSummarizeAuditLevelsAndOutcomes(t *testing.T) {
	s := openTest(t)
	base := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	var rows []Row
	add := func(min int, outcome, level string) {
		tm := base.Add(time.Duration(min) * time.Minute)
		rows = append(rows, Row{ID: NewID(tm), Time: tm, Kind: KindRequest, TenantID: "ten_a", Outcome: outcome, Level: level})
	}
	add(0, "substituted", "tenant")
	add(1, "substituted", "binding")
	add(2, "denied", "")
	add(61, "substituted", "external_user")
	add(62, "", "tenant")
	rows = append(rows, Row{ID: NewID(base), Time: base, Kind: KindAdmin, TenantID: "ten_a", Action: "secret.created"})
	if err := s.Append(rows...); err != nil {
		t.Fatal(err)
	}
	got, err := s.Summarize("ten_a", Filter{Since: base, Until: base.Add(2 * time.Hour)}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Buckets) != 2 || got.BucketSeconds != 3600 {
		t.Fatalf("buckets %d of %ds, want 2 of 3600s", len(got.Buckets), got.BucketSeconds)
	}
	b0, b1 := got.Buckets[0], got.Buckets[1]
	if b0.Requests != 3 || b0.Outcomes["substituted"] != 2 || b0.Outcomes["denied"] != 1 ||
		b0.Levels["tenant"] != 1 || b0.Levels["binding"] != 1 || b0.Levels["none"] != 1 {
		t.Errorf("first hour: %+v", b0.Counts)
	}
	if b1.Requests != 2 || b1.Outcomes["unknown"] != 1 || b1.Levels["external_user"] != 1 {
		t.Errorf("second hour: %+v", b1.Counts)
	}
	if got.Total.Requests != 5 {
		t.Errorf("total %d, want 5 (admin rows are not requests)", got.Total.Requests)
	}
	// Another tenant sees none of them.
	other, err := s.Summarize("ten_b", Filter{Since: base, Until: base.Add(2 * time.Hour)}, time.Hour)
	if err != nil || other.Total.Requests != 0 {
		t.Errorf("other tenant: %d rows, %v", other.Total.Requests, err)
	}
}

// Regression: a summary's work is bounded, and one that stopped early says
// from when on its counts are complete.
func TestSummarizeAuditBounded(t *testing.T) {
	s := openTest(t)
	base := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	var rows []Row
	for i := range 50 {
		tm := base.Add(time.Duration(i) * time.Second)
		rows = append(rows, Row{ID: NewID(tm), Time: tm, Kind: KindRequest, TenantID: "ten_a", Outcome: "substituted"})
	}
	if err := s.Append(rows...); err != nil {
		t.Fatal(err)
	}
	f := Filter{Since: base, Until: base.Add(time.Minute)}
	for _, c := range []struct {
		name   string
		lim    summaryBounds
		counts int
		trunc  bool
	}{
		{"row cap", summaryBounds{rows: 20, pages: 100, perPage: 1000}, 20, true},
		{"row cap exactly met", summaryBounds{rows: 50, pages: 100, perPage: 1000}, 50, false},
		{"page cap", summaryBounds{rows: 1000, pages: 3, perPage: 7}, 21, true},
		{"within bounds", summaryBounds{rows: 1000, pages: 100, perPage: 7}, 50, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := s.summarizeAudit("ten_a", f, 10*time.Second, c.lim)
			if err != nil {
				t.Fatal(err)
			}
			if got.Total.Requests != c.counts || got.Truncated != c.trunc {
				t.Fatalf("counted %d truncated %v, want %d %v", got.Total.Requests, got.Truncated, c.counts, c.trunc)
			}
			if c.trunc {
				// Newest first: the rows counted are the newest ones.
				want := base.Add(time.Duration(50-c.counts) * time.Second)
				if got.CompleteSince == nil || !got.CompleteSince.Equal(want) {
					t.Fatalf("complete_since %v, want %v", got.CompleteSince, want)
				}
			}
		})
	}
}

func TestSummarizeAuditRefuses(t *testing.T) {
	s := openTest(t)
	base := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		name   string
		f      Filter
		bucket time.Duration
		field  string
	}{
		{"no since", Filter{Until: base}, time.Hour, "since"},
		{"no until", Filter{Since: base}, time.Hour, "since"},
		{"sub-second bucket", Filter{Since: base, Until: base.Add(time.Hour)}, time.Millisecond, "bucket"},
		{"too many buckets", Filter{Since: base, Until: base.Add(30 * 24 * time.Hour)}, time.Minute, "bucket"},
		{"until before since", Filter{Since: base.Add(time.Hour), Until: base}, time.Minute, "until"},
		// Regression: a bucket near Go's 292-year Duration overflowed the bucket count (negative make: panic).
		{"bucket over 3650 days", Filter{Since: time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC), Until: time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)}, 1 << 62, "bucket"},
		{"NUL in a filter", Filter{Since: base, Until: base.Add(time.Hour), SandboxID: "a\x00b"}, time.Minute, "sandbox_id"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := s.Summarize("ten_a", c.f, c.bucket)
			if !errors.Is(err, ErrInvalid) || !containsField(err, c.field) {
				t.Fatalf("got %v, want ErrInvalid naming %s", err, c.field)
			}
		})
	}
}

func containsField(err error, field string) bool {
	var ve *ValidationError
	return errors.As(err, &ve) && ve.Field == field
}
