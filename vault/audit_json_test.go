package vault

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// auditJSONSamples are strings that exercise every escape.
var auditJSONSamples = []string{
	"", "a", `q"uote`, `back\slash`, "<script>&amp;</script>", "\x00\x01\x1f\x7f", "\b\f\n\r\t",
	"ünïcødé ✓ 🚀", "\u2028\u2029", "bad \xff\xfe utf8", "\xe2\x82", "tail\xc3", "/v1/chat/completions",
}

func randomAuditRow(rng *rand.Rand, pick func() string) AuditRow {
	maybe := func() string {
		if rng.IntN(3) == 0 {
			return ""
		}
		return pick()
	}
	num := func() int {
		switch rng.IntN(4) {
		case 0:
			return 0
		case 1:
			return -rng.IntN(1000)
		default:
			return rng.IntN(1 << 30)
		}
	}
	r := AuditRow{
		ID: pick(), Time: time.Unix(rng.Int64N(7e9), rng.Int64N(1e9)).UTC(), Kind: pick(), TenantID: pick(),
		WorkspaceID: maybe(), OwnerUserID: maybe(), ExternalUserID: maybe(), ExternalWorkspaceID: maybe(),
		ExternalProjectID: maybe(), SandboxID: maybe(), ActorKind: maybe(), ActorID: maybe(), Action: maybe(),
		SecretID: maybe(), SecretName: maybe(), SecretVersion: num(), Level: maybe(), Host: maybe(),
		Method: maybe(), Path: maybe(), Status: num(), Outcome: maybe(), Reason: maybe(),
	}
	switch rng.IntN(6) {
	case 0:
	case 1:
		r.DurationMS = float64(rng.IntN(100000)) / 1000
	case 2:
		r.DurationMS = rng.Float64() * 1e-7
	case 3:
		r.DurationMS = rng.Float64() * 1e25
	case 4:
		r.DurationMS = -rng.Float64() * 100
	default:
		r.DurationMS = math.Float64frombits(rng.Uint64())
	}
	for range rng.IntN(4) {
		r.Uses = append(r.Uses, AuditUse{Name: pick(), SecretID: maybe(), Version: num(), Level: maybe(),
			Location: maybe(), Action: maybe(), Reason: maybe(), Leak: rng.IntN(2) == 0, LeakSandboxID: maybe()})
	}
	if rng.IntN(3) == 0 {
		r.Details = map[string]string{}
		for range rng.IntN(5) {
			r.Details[pick()] = maybe()
		}
	}
	return r
}

// appendJSON writes what json.Marshal writes, byte for byte.
func TestAuditRowJSON(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	pick := func() string { return auditJSONSamples[rng.IntN(len(auditJSONSamples))] }
	for i := range 20000 {
		r := randomAuditRow(rng, pick)
		want, err := json.Marshal(&r)
		if err != nil {
			continue // NaN and infinities: json.Marshal refuses them
		}
		if got := r.appendJSON(nil); !bytes.Equal(got, want) {
			t.Fatalf("row %d:\n got %s\nwant %s", i, got, want)
		}
	}
}

func FuzzAuditRowJSON(f *testing.F) {
	for _, s := range auditJSONSamples {
		f.Add(s, s+"x", uint64(len(s)), 1.5)
	}
	f.Fuzz(func(t *testing.T, a, b string, seed uint64, d float64) {
		rng := rand.New(rand.NewPCG(seed, 7))
		strs := []string{a, b, a + b}
		r := randomAuditRow(rng, func() string { return strs[rng.IntN(len(strs))] })
		r.DurationMS = d
		want, err := json.Marshal(&r)
		if err != nil {
			return
		}
		if got := r.appendJSON(nil); !bytes.Equal(got, want) {
			t.Fatalf("\n got %s\nwant %s", got, want)
		}
	})
}

func BenchmarkAuditRowJSON(b *testing.B) {
	r := requestRow("ten_a", time.Now(), 1)
	b.Run("encoding/json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(&r); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("appendJSON", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = r.appendJSON(make([]byte, 0, 512))
		}
	})
}
