package audit

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// auditJSONSamples are strings that exercise every escape.
var auditJSONSamples = []string{
	"", "a", `q"uote`, `back\slash`, "<script>&amp;</script>", "\x00\x01\x1f\x7f", "\b\f\n\r\t",
	"ünïcødé ✓ 🚀", "\u2028\u2029", "bad \xff\xfe utf8", "\xe2\x82", "tail\xc3", "/v1/chat/completions",
}

func randomAuditRow(rng *rand.Rand, pick func() string) Row {
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
	r := Row{
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
		r.Uses = append(r.Uses, Use{Name: pick(), SecretID: maybe(), Version: num(), Level: maybe(),
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

// TestAuditRowBinary: a row prepared reads back the same from its full
// encoding (the journal's, a table's) and from its keyed one with its
// key (the bucket's); and a row stored as JSON, before the binary
// encoding, reads as it did.
func TestAuditRowBinary(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	pick := func() string { return auditJSONSamples[rng.IntN(len(auditJSONSamples))] }
	checked := 0
	for i := range 20000 {
		r := randomAuditRow(rng, pick)
		if checkAuditRowBinary(t, &r) {
			checked++
		}
		if i%10 == 0 {
			// A row as it was stored before: JSON.
			old, err := json.Marshal(&r)
			if err != nil {
				continue
			}
			var want, got Row
			if err := json.Unmarshal(old, &want); err != nil {
				t.Fatal(err)
			}
			if err := decodeAuditRow(old, nil, &got); err != nil {
				t.Fatalf("row %d: JSON %s: %v", i, old, err)
			}
			if a, b := mustJSON(t, &got), mustJSON(t, &want); !bytes.Equal(a, b) {
				t.Fatalf("row %d: JSON read as\n%s\nwant\n%s", i, a, b)
			}
		}
	}
	if checked < 5000 {
		t.Fatalf("only %d rows checked", checked)
	}
}

func mustJSON(tb testing.TB, r *Row) []byte {
	tb.Helper()
	b, err := json.Marshal(r)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// checkAuditRowBinary prepares r (a kind and tenant given when it has
// none) and checks both encodings read back as r; false when prepare
// refuses r.
func checkAuditRowBinary(tb testing.TB, r *Row) bool {
	tb.Helper()
	if r.Kind != KindAdmin {
		r.Kind = KindRequest
	}
	if !validAuditID(r.ID) {
		r.ID = ""
	}
	e, err := r.prepare(time.Now)
	if err != nil {
		return false
	}
	want, err := json.Marshal(r)
	if err != nil {
		return false // NaN or an infinity: prepare refuses them
	}
	var full, keyed Row
	if err := decodeAuditRow(e.val, nil, &full); err != nil {
		tb.Fatalf("full encoding of %s: %v", want, err)
	}
	if err := decodeAuditRow(e.bval, e.key, &keyed); err != nil {
		tb.Fatalf("keyed encoding of %s: %v", want, err)
	}
	for _, got := range []*Row{&full, &keyed} {
		if b := mustJSON(tb, got); !bytes.Equal(b, want) {
			tb.Fatalf("read back as\n%s\nwant\n%s", b, want)
		}
		if !got.Time.Equal(r.Time) || got.Time.Location() != time.UTC {
			tb.Fatalf("time %v, want %v", got.Time, r.Time)
		}
	}
	return true
}

// FuzzAuditRowBinary: every row prepare takes reads back the same from
// both its encodings.
func FuzzAuditRowBinary(f *testing.F) {
	for _, s := range auditJSONSamples {
		f.Add(s, s+"x", uint64(len(s)), 1.5)
	}
	f.Add("ten_a", NewID(time.Unix(1e9, 5)), uint64(3), 12.345)
	f.Fuzz(func(t *testing.T, a, b string, seed uint64, d float64) {
		rng := rand.New(rand.NewPCG(seed, 7))
		strs := []string{a, b, a + b}
		r := randomAuditRow(rng, func() string { return strs[rng.IntN(len(strs))] })
		r.DurationMS = d
		checkAuditRowBinary(t, &r)
	})
}

// FuzzAuditRowDecode: any bytes are read as a row or refused, never a
// panic; a row read encodes to bytes that read back as the same row.
func FuzzAuditRowDecode(f *testing.F) {
	key := auditRowKey("ten_a", auditPos(auditTime(time.Unix(1e9, 5)), NewID(time.Unix(1e9, 5))))
	for i := range 8 {
		r := requestRow("ten_a", time.Unix(1e9, 5), i)
		r.Details = map[string]string{"a": "b"}
		if e, err := r.prepare(time.Now); err == nil {
			f.Add(e.val, false)
			f.Add(e.bval, true)
		}
	}
	f.Add([]byte(`{"id":"x","kind":"request"}`), false)
	f.Fuzz(func(t *testing.T, data []byte, keyed bool) {
		var k []byte
		if keyed {
			k = key
		}
		// Some fields only, as a summary reads them: never a panic, and
		// the fields asked for as a whole read gives them.
		need := uint64(len(data)*0x9e3779b9) & allAuditFields
		var part Row
		partErr := decodeAuditRowFields(data, k, &part, need)
		var r Row
		if err := decodeAuditRow(data, k, &r); err != nil {
			return
		}
		if partErr != nil {
			t.Fatalf("read whole, but not its fields %x: %v", need, partErr)
		}
		if need&(1<<binKind) != 0 && part.Kind != r.Kind || need&(1<<binOutcome) != 0 && part.Outcome != r.Outcome ||
			need&(1<<binSandboxID) != 0 && part.SandboxID != r.SandboxID || !part.Time.Equal(r.Time) || part.ID != r.ID ||
			need&(1<<binUses) != 0 && need&(1<<binSecretName) != 0 && need&(1<<binSecretID) != 0 && !slices.Equal(part.secretIDs(), r.secretIDs()) {
			t.Fatalf("fields %x read as %+v, whole %+v", need, part, r)
		}
		if len(data) > 0 && data[0] == '{' {
			return // JSON: encoding/json's
		}
		want, err := json.Marshal(&r)
		if err != nil {
			return // a NaN duration, from 8 bytes of float
		}
		var again Row
		if err := decodeAuditRow(r.appendBinary(nil, true), nil, &again); err != nil {
			t.Fatalf("%s encoded again: %v", want, err)
		}
		if got := mustJSON(t, &again); !bytes.Equal(got, want) {
			t.Fatalf("encoded again, read as\n%s\nwant\n%s", got, want)
		}
	})
}

// TestPrepareParts checks that prepare's one buffer holds each part as
// the functions that build it alone write it: the position, the key,
// both encodings and every index prefix, for rows with an id of
// NewID's (of the row's time and not), a caller's own id, no
// secret, and more secrets than prepare keeps on its stack.
func TestPrepareParts(t *testing.T) {
	at := time.Date(2026, 3, 1, 12, 0, 0, 5, time.UTC)
	many := requestRow("ten_a", at, 1)
	for i := range 12 {
		many.Uses = append(many.Uses, Use{Name: "n", SecretID: fmt.Sprintf("sec_%d", i%10), Action: "substituted"})
	}
	for name, r := range map[string]Row{
		"own id":       requestRow("ten_a", at, 1),
		"other time":   func() Row { r := requestRow("ten_a", at, 2); r.ID = NewID(at.Add(time.Hour)); return r }(),
		"caller's id":  func() Row { r := requestRow("ten_b", at, 3); r.ID = "req-17.x"; return r }(),
		"no secret":    {ID: "a", Time: at, Kind: KindAdmin, TenantID: "ten_c", Action: "secret.create"},
		"many secrets": many,
	} {
		t.Run(name, func(t *testing.T) {
			e, err := r.prepare(time.Now)
			if err != nil {
				t.Fatal(err)
			}
			tb := auditTime(r.Time)
			pos := auditPos(tb, r.ID)
			if !bytes.Equal(e.pos, pos) || !bytes.Equal(e.key, auditRowKey(r.TenantID, pos)) {
				t.Fatalf("pos %x key %x, want %x", e.pos, e.key, pos)
			}
			if !bytes.Equal(e.val, r.appendBinary(nil, true)) || !bytes.Equal(e.bval, r.appendBinary(nil, false)) || !bytes.Equal(e.rec.Data, e.val) {
				t.Fatal("encodings differ from appendBinary's")
			}
			for i, ix := range auditIndexes {
				var want [][]byte
				for _, v := range ix.values(&r, nil) {
					want = append(want, auditIndexPrefix(r.TenantID, v))
				}
				if !slices.EqualFunc(e.idx[i], want, bytes.Equal) {
					t.Fatalf("index %s: prefixes %x, want %x", ix.bucket, e.idx[i], want)
				}
			}
			if n := len(e.idx[2]); name == "many secrets" && n != 11 {
				t.Fatalf("%d secret prefixes, want 11", n)
			}
		})
	}
}

func BenchmarkAuditRowEncode(b *testing.B) {
	r := requestRow("ten_a", time.Now(), 1)
	b.Run("encoding/json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(&r); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("prepare", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			rr := r
			if _, err := rr.prepare(time.Now); err != nil {
				b.Fatal(err)
			}
		}
	})
	e, _ := r.prepare(time.Now)
	b.Run("decode-keyed", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var got Row
			if err := decodeAuditRow(e.bval, e.key, &got); err != nil {
				b.Fatal(err)
			}
		}
	})
	j, _ := json.Marshal(&r)
	b.Run("decode-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var got Row
			if err := decodeAuditRow(j, nil, &got); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestParseAuditID checks the id decoder against encoding/base32 and
// encoding the bytes again: for ids of NewID's and for ids with a
// character changed at random (outside the alphabet, lower case, last
// bits set), it accepts exactly the ids whose bytes encode back to them.
func TestParseAuditID(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	chars := []byte("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcv_-.\n\x00\xff")
	for i := range 20000 {
		id := []byte(NewID(time.Unix(int64(rng.Uint32()), int64(rng.IntN(1e9)))))
		if i%2 == 1 {
			id[len(auditIDPrefix)+rng.IntN(26)] = chars[rng.IntN(len(chars))]
		}
		raw, ok := parseAuditID(string(id))
		var want [16]byte
		n, err := auditIDEncoding.Decode(want[:], id[len(auditIDPrefix):])
		wantOK := err == nil && n == 16 && formatAuditID(want[:]) == string(id)
		if ok != wantOK || (ok && raw != want) {
			t.Fatalf("%q: %x %v, want %x %v", id, raw, ok, want, wantOK)
		}
	}
}
