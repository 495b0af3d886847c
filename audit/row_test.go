package audit

import (
	"bufio"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// allRows exports every row of the file, oldest first.
func allRows(tb testing.TB, s *testLog) []Row {
	tb.Helper()
	var out []Row
	if err := s.Export("", time.Time{}, func(r Row) error { out = append(out, r); return nil }); err != nil {
		tb.Fatal(err)
	}
	return out
}

func requestRow(tenantID string, t time.Time, i int) Row {
	return Row{
		ID: NewID(t), Time: t, Kind: KindRequest, TenantID: tenantID,
		WorkspaceID: "w1", OwnerUserID: "u1", ExternalUserID: fmt.Sprintf("eu%d", i%3), ExternalWorkspaceID: "ew1",
		ExternalProjectID: "p1", SandboxID: fmt.Sprintf("sbx_%d", i%5),
		SecretID: "sec_a", SecretName: "openai", SecretVersion: 2, Level: "tenant",
		Host: "api.openai.com", Method: "POST", Path: "/v1/chat/completions", Status: 200, Outcome: "substituted",
		DurationMS: 12.5, Uses: []Use{{Name: "openai", SecretID: "sec_a", Version: 2, Level: "tenant", Location: "header", Action: "substituted"}},
	}
}

func TestAppendAuditValidates(t *testing.T) {
	s := openTest(t)
	now := time.Now()
	ok := requestRow("ten_a", now, 0)
	for _, c := range []struct {
		name string
		edit func(*Row)
	}{
		{"no kind", func(r *Row) { r.Kind = "" }},
		{"unknown kind", func(r *Row) { r.Kind = "debug" }},
		{"no tenant", func(r *Row) { r.TenantID = "" }},
		{"NUL in tenant", func(r *Row) { r.TenantID = "a\x00b" }},
		{"NUL in an indexed id", func(r *Row) { r.ExternalUserID = "eu\x00" }},
		{"NUL in a use", func(r *Row) { r.Uses[0].SecretID = "\x00" }},
		{"bad id", func(r *Row) { r.ID = "a b" }},
		{"long id", func(r *Row) { r.ID = strings.Repeat("a", 65) }},
		{"time before 1970", func(r *Row) { r.Time = time.Date(1969, 1, 1, 0, 0, 0, 0, time.UTC) }},
		{"huge id", func(r *Row) { r.SandboxID = strings.Repeat("s", maxAuditField+1) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			bad := ok
			bad.Uses = append([]Use(nil), ok.Uses...)
			c.edit(&bad)
			// The good row in the same call is not written either.
			if err := s.Append(ok, bad); !errors.Is(err, ErrInvalid) {
				t.Fatalf("err %v, want ErrInvalid", err)
			}
			if rows := allRows(t, s); len(rows) != 0 {
				t.Fatalf("%d rows written", len(rows))
			}
		})
	}
}

// Ids as long as AppendAudit takes are indexed and found: index keys are
// of a fixed length whatever the ids (auditIndexPrefix), and a row key of
// the longest tenant and id is within the store's limit.
func TestAppendAuditLongIDsIndexed(t *testing.T) {
	s := openTest(t)
	r := requestRow(strings.Repeat("t", maxAuditField), time.Now(), 0)
	r.ID = strings.Repeat("i", maxAuditIDLen)
	r.SandboxID = strings.Repeat("s", maxAuditField)
	if err := s.Append(r); err != nil {
		t.Fatal(err)
	}
	rows, _, err := s.Query(r.TenantID, Filter{SandboxID: r.SandboxID})
	if err != nil || len(rows) != 1 {
		t.Fatalf("%d rows (%v), want 1", len(rows), err)
	}
	r.SandboxID += "s"
	r.ID = ""
	if err := s.Append(r); !errors.Is(err, ErrInvalid) {
		t.Fatalf("one byte more: %v, want ErrInvalid", err)
	}
}

// TestAppendAuditFills checks the fields AppendAudit fills in or cuts,
// and that it leaves the caller's rows alone.
func TestAppendAuditFills(t *testing.T) {
	now := time.Date(2026, 2, 3, 4, 5, 6, 789000000, time.UTC)
	clock := struct{ Now func() time.Time }{func() time.Time { return now }}
	s := openTest(t, func(c *Config) { c.Now = clock.Now })
	in := []Row{
		{Kind: KindRequest, TenantID: "ten_a", Path: "/v1/x?key=SECRET#frag"},
		{Kind: KindRequest, TenantID: "ten_a", Path: "/" + strings.Repeat("é", maxAuditPath), Time: clock.Now().In(time.FixedZone("X", 3600)).Add(time.Second)},
	}
	keep := fmt.Sprint(in)
	if err := s.Append(in...); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(in) != keep {
		t.Errorf("AppendAudit changed its argument")
	}
	rows := allRows(t, s)
	if len(rows) != 2 {
		t.Fatalf("%d rows", len(rows))
	}
	if r := rows[0]; !validAuditID(r.ID) || !strings.HasPrefix(r.ID, auditIDPrefix) || !r.Time.Equal(clock.Now()) || r.Path != "/v1/x" {
		t.Errorf("first row %+v", r)
	}
	if r := rows[1]; r.Time.Location() != time.UTC || len(r.Path) > maxAuditPath || !strings.HasPrefix(r.Path, "/éé") || !utf8Valid(r.Path) {
		t.Errorf("second row: time %v, path of %d bytes", r.Time, len(r.Path))
	}
	// Ids sort by time.
	if !(rows[0].ID < rows[1].ID) || NewID(clock.Now()) >= NewID(clock.Now().Add(time.Nanosecond)) {
		t.Errorf("ids do not sort by time")
	}
}

func utf8Valid(s string) bool { return strings.ToValidUTF8(s, "\uFFFD") == s }

// TestAppendAuditDurable writes in sync mode, closes, reopens and reads
// every row back as it was given; rewriting rows with their ids does not
// duplicate them.
func TestAppendAuditDurable(t *testing.T) {
	s := openTest(t, func(c *Config) { c.NoSync = false })
	base := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	var want []Row
	for i := range 50 {
		r := requestRow("ten_a", base.Add(time.Duration(i)*time.Millisecond), i)
		want = append(want, r)
		if err := s.Append(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Append(want[:10]...); err != nil {
		t.Fatal(err)
	}
	s = reopen(t, s)
	if got := allRows(t, s); !reflect.DeepEqual(got, want) {
		t.Fatalf("after reopen: %d rows, want %d equal ones", len(got), len(want))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Append(want[0]); !errors.Is(err, ErrClosed) {
		t.Errorf("append after close: %v, want ErrClosed", err)
	}
}

// TestAppendAuditConcurrent appends from 64 goroutines at once, one and
// several rows a call: every row is there once.
func TestAppendAuditConcurrent(t *testing.T) {
	s := openTest(t)
	const writers, perWriter = 64, 60
	base := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perWriter; {
				n := 1 + (w+i)%3
				var rows []Row
				for j := 0; j < n && i < perWriter; j++ {
					// Equal times across writers.
					r := requestRow(fmt.Sprintf("ten_%d", w%2), base.Add(time.Duration(i)*time.Millisecond), w)
					r.ID = fmt.Sprintf("w%d-%d", w, i)
					rows = append(rows, r)
					i++
				}
				if err := s.Append(rows...); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	rows := allRows(t, s)
	seen := map[string]bool{}
	for _, r := range rows {
		if seen[r.ID] {
			t.Fatalf("row %s twice", r.ID)
		}
		seen[r.ID] = true
	}
	if len(seen) != writers*perWriter {
		t.Fatalf("%d rows, want %d", len(seen), writers*perWriter)
	}
	for w := range writers {
		for i := range perWriter {
			if !seen[fmt.Sprintf("w%d-%d", w, i)] {
				t.Fatalf("row w%d-%d lost", w, i)
			}
		}
	}
}

// TestAppendAuditCrash kills a child process that appends rows in sync
// mode with SIGKILL mid-load: every row it was told was committed is in
// the store after the restart (on PostgreSQL: those it had shipped, and
// those the restart ships from its journal).
func TestAppendAuditCrash(t *testing.T) {
	if path := os.Getenv("EGRESSD_AUDIT_CRASH_CHILD"); path != "" {
		crashChild(t, path)
		return
	}
	if testing.Short() {
		t.Skip("spawns a child process")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "vault.db")
	s, err := openCfg(t, path, Config{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^TestAppendAuditCrash$")
	cmd.Env = append(os.Environ(), "EGRESSD_AUDIT_CRASH_CHILD="+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var acked []string
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if id, ok := strings.CutPrefix(sc.Text(), "ack "); ok {
			acked = append(acked, id)
			if len(acked) == 2000 {
				cmd.Process.Kill()
				break
			}
		}
	}
	cmd.Wait()
	if len(acked) < 2000 {
		t.Fatalf("child acknowledged %d rows before it ended", len(acked))
	}
	s, err = openCfg(t, path, Config{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	have := map[string]bool{}
	for _, r := range allRows(t, s) {
		have[r.ID] = true
	}
	for _, id := range acked {
		if !have[id] {
			t.Fatalf("row %s was acknowledged but is lost (%d of %d rows in the file)", id, len(have), len(acked))
		}
	}
	t.Logf("%d rows acknowledged, %d in the file", len(acked), len(have))
}

// crashChild appends rows from 16 goroutines until it is killed, printing
// each id once AppendAudit returned.
func crashChild(t *testing.T, path string) {
	s, err := openCfg(t, path, Config{})
	if err != nil {
		panic(err)
	}
	var mu sync.Mutex
	w := bufio.NewWriter(os.Stdout)
	for g := range 16 {
		go func() {
			for i := 0; ; i++ {
				r := requestRow("ten_a", time.Now(), rand.IntN(10))
				r.ID = fmt.Sprintf("g%d-%d", g, i)
				if err := s.Append(r); err != nil {
					panic(err)
				}
				mu.Lock()
				fmt.Fprintf(w, "ack %s\n", r.ID)
				w.Flush()
				mu.Unlock()
			}
		}()
	}
	select {}
}

// NewID is "aud_" and the 26 base32hex characters of its 16 bytes, which
// parse back; ids of later times sort after.
func TestNewIDShape(t *testing.T) {
	now := time.Now()
	a, b := NewID(now), NewID(now.Add(time.Microsecond))
	for _, id := range []string{a, b} {
		raw, ok := parseAuditID(id)
		if !ok || len(id) != len(auditIDPrefix)+26 || !validAuditID(id) {
			t.Fatalf("id %q: parsed %v", id, ok)
		}
		if want := auditIDPrefix + auditIDEncoding.EncodeToString(raw[:]); id != want {
			t.Fatalf("id %q, want %q", id, want)
		}
	}
	if a >= b {
		t.Fatalf("%q does not sort before %q", a, b)
	}
}

func BenchmarkNewID(b *testing.B) {
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		_ = NewID(now)
	}
}
