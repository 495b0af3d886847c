package proxy

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/egressd/egressd/vault"
)

// testCore builds a well-formed core from a seed character.
func testCore(c byte) string { return marker + strings.Repeat(string(c), vault.PlaceholderTailLen) }

// table maps cores to (prefix, value), recording every call it answers.
type table struct {
	entries map[string][2]string
	calls   []string
}

func (t *table) fn(core, lookback []byte) (int, []byte, bool) {
	t.calls = append(t.calls, fmt.Sprintf("%s|%s", core, lookback))
	e, ok := t.entries[string(core)]
	if !ok || !bytes.HasSuffix(lookback, []byte(e[0])) {
		return 0, nil, false
	}
	return len(e[0]), []byte(e[1]), true
}

func newTable() *table {
	return &table{entries: map[string][2]string{
		testCore('a'): {"", "VALUE-A"},
		testCore('b'): {"sk-proj-", "sk-real-b"},
		testCore('c'): {"", ""},
		testCore('d'): {"ghp_", strings.Repeat("D", 100)},
	}}
}

func TestReplace(t *testing.T) {
	a, b, d := testCore('a'), testCore('b'), testCore('d')
	cases := []struct{ name, in, want string }{
		{"none", `{"model":"gpt"}`, `{"model":"gpt"}`},
		{"whole", a, "VALUE-A"},
		{"json", `{"key":"` + a + `"}`, `{"key":"VALUE-A"}`},
		{"prefix", "Bearer sk-proj-" + b, "Bearer sk-real-b"},
		{"prefix missing is left", "Bearer " + b, "Bearer " + b},
		{"two adjacent", a + a, "VALUE-AVALUE-A"},
		{"prefix after a substitution is not borrowed", a + "ghp_" + d, "VALUE-A" + strings.Repeat("D", 100)},
		{"tail too short", a[:len(a)-1], a[:len(a)-1]},
		{"tail with bad char", a[:10] + "-" + a[11:], a[:10] + "-" + a[11:]},
		{"unknown", testCore('z'), testCore('z')},
		{"marker in marker", "EGP_" + a, "EGP_VALUE-A"},
		{"followed by alnum", a + "xyz", "VALUE-Axyz"},
		{"empty value", "[" + testCore('c') + "]", "[]"},
		{"non-ascii", "héllo " + a + " wörld", "héllo VALUE-A wörld"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := Replace([]byte(c.in), newTable().fn)
			if string(got) != c.want {
				t.Fatalf("got %q\nwant %q", got, c.want)
			}
			r := NewReader(iotest.OneByteReader(strings.NewReader(c.in)), newTable().fn)
			streamed, err := io.ReadAll(r)
			if err != nil || string(streamed) != c.want {
				t.Fatalf("streamed %q, %v\nwant %q", streamed, err, c.want)
			}
		})
	}
}

// No placeholder: the same slice comes back, not a copy.
func TestReplaceNoCopy(t *testing.T) {
	in := []byte(strings.Repeat(`{"role":"user","content":"hello EGP_ world"}`, 100))
	out := Replace(in, newTable().fn)
	if &out[0] != &in[0] {
		t.Fatal("Replace copied a body without placeholders")
	}
	if Contains(in) {
		t.Fatal("Contains: false positive")
	}
	if !Contains([]byte("x" + testCore('q'))) {
		t.Fatal("Contains: missed a core")
	}
}

// The source's error is passed on after the data before it.
func TestReaderError(t *testing.T) {
	boom := fmt.Errorf("boom")
	r := NewReader(io.MultiReader(strings.NewReader("abc"+testCore('a')), iotest.ErrReader(boom)), newTable().fn)
	got, err := io.ReadAll(r)
	if err != boom {
		t.Fatalf("err %v", err)
	}
	if !strings.HasPrefix("abcVALUE-A", string(got)) {
		t.Fatalf("got %q", got)
	}
}

// chunker splits its data at the given sizes, cycling.
type chunker struct {
	data  []byte
	sizes []int
	i     int
}

func (c *chunker) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := 1
	if len(c.sizes) > 0 {
		n = c.sizes[c.i%len(c.sizes)]
		c.i++
	}
	n = max(1, min(n, len(p), len(c.data)))
	copy(p, c.data[:n])
	c.data = c.data[n:]
	return n, nil
}

// FuzzStreamEqualsWhole: for any input and any chunking, the streamed
// output and the sequence of decisions equal the whole-buffer ones.
func FuzzStreamEqualsWhole(f *testing.F) {
	a, b := testCore('a'), testCore('b')
	f.Add([]byte("x"+a+"y"), []byte{1, 2, 3})
	f.Add([]byte("sk-proj-"+b+a+"EGP_EGP_"+a), []byte{7})
	f.Add([]byte(strings.Repeat("z", 40000)+"sk-proj-"+b), []byte{255, 13})
	f.Add([]byte("ghp_"+testCore('d')+"ghp_"+testCore('d')), []byte{5, 40})
	f.Fuzz(func(t *testing.T, in []byte, sizes []byte) {
		whole := newTable()
		want := Replace(bytes.Clone(in), whole.fn)
		var sz []int
		for _, s := range sizes {
			sz = append(sz, int(s)*int(s)+1)
		}
		streamed := newTable()
		got, err := io.ReadAll(NewReader(&chunker{data: in, sizes: sz}, streamed.fn))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("streamed %q\nwhole    %q", got, want)
		}
		if fmt.Sprint(whole.calls) != fmt.Sprint(streamed.calls) {
			t.Fatalf("decisions differ:\nwhole    %q\nstreamed %q", whole.calls, streamed.calls)
		}
	})
}

func chatBody(n int) []byte {
	var b bytes.Buffer
	b.WriteString(`{"model":"gpt-4o","messages":[`)
	for b.Len() < n-200 {
		b.WriteString(`{"role":"user","content":"Please refactor the function parse_config so it returns an error instead of panicking; keep the tests green."},`)
	}
	b.WriteString(`{"role":"user","content":"ok"}]}`)
	return b.Bytes()
}

func BenchmarkReplaceNoPlaceholder1MiB(b *testing.B) {
	body := chatBody(1 << 20)
	fn := newTable().fn
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		Replace(body, fn)
	}
}

func BenchmarkReplaceWithPlaceholders1MiB(b *testing.B) {
	body := chatBody(1 << 20)
	// 16 placeholders spread through the body.
	for i := 1; i <= 16; i++ {
		at := i * len(body) / 17
		copy(body[at:], testCore('a'))
	}
	fn := func(core, lb []byte) (int, []byte, bool) { return 0, []byte("sk-real-value-0123456789"), true }
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		Replace(body, fn)
	}
}

func BenchmarkReaderNoPlaceholder1MiB(b *testing.B) {
	body := chatBody(1 << 20)
	fn := newTable().fn
	buf := make([]byte, 32<<10)
	src := bytes.NewReader(body)
	r := NewReader(src, fn)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		src.Reset(body)
		*r = Reader{src: src, fn: fn, buf: r.buf[:0], out: r.out[:0]}
		for {
			_, err := r.Read(buf)
			if err != nil {
				break
			}
		}
	}
}

// FuzzObserverEqualsReplace: the pass-through observer reports the same
// occurrences, with the same lookback, as Replace with an fn that never
// substitutes, for any chunking; and it never changes the bytes.
func FuzzObserverEqualsReplace(f *testing.F) {
	a, b := testCore('a'), testCore('b')
	f.Add([]byte("x"+a+"y"), []byte{1, 2, 3})
	f.Add([]byte("sk-proj-"+b+a+"EGP_EGP_"+a), []byte{7})
	f.Add([]byte(strings.Repeat("z", 40000)+"sk-proj-"+b), []byte{255, 13})
	f.Fuzz(func(t *testing.T, in []byte, sizes []byte) {
		var want []string
		Replace(in, func(core, lb []byte) (int, []byte, bool) {
			want = append(want, string(lb)+"|"+string(core))
			return 0, nil, false
		})
		var got []string
		var sz []int
		for _, s := range sizes {
			sz = append(sz, int(s)+1)
		}
		o := newObserver(io.NopCloser(&chunker{data: in, sizes: sz}), func(core, lb []byte) (int, []byte, bool) {
			got = append(got, string(lb)+"|"+string(core))
			return 0, []byte("X"), true
		})
		out, err := io.ReadAll(o)
		if err != nil || !bytes.Equal(out, in) {
			t.Fatalf("observer changed the body: %v", err)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("observed %q\nwant     %q", got, want)
		}
	})
}

// The redactor masks every echoed value, whatever the read sizes.
func TestRedactorChunking(t *testing.T) {
	echoes := []echo{newEcho([]byte("secret-value-1"), []byte("EGP_one")), newEcho([]byte("secret-value-12"), []byte("EGP_two"))}
	in := "a secret-value-1 b secret-value-12 c secret-value-1secret-value-1 secret-valu"
	want := "a EGP_one b EGP_two c EGP_oneEGP_one secret-valu"
	if got := maskAll([]byte(in), echoes); string(got) != want {
		t.Fatalf("maskAll: %q", got)
	}
	for _, sizes := range [][]int{{1}, {2, 3}, {7}, {100}, {13, 1, 5}} {
		r := newRedactor(io.NopCloser(&chunker{data: []byte(in), sizes: sizes}), &subst{echoes: echoes}, nil)
		got, err := io.ReadAll(r)
		if err != nil || string(got) != want {
			t.Fatalf("sizes %v: %q %v", sizes, got, err)
		}
	}
}

// The pass-through observer: the body is read straight into the caller's
// buffer and scanned in place.
func BenchmarkObserverNoPlaceholder1MiB(b *testing.B) {
	body := chatBody(1 << 20)
	fn := newTable().fn
	buf := make([]byte, 32<<10)
	src := bytes.NewReader(body)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		src.Reset(body)
		o := observer{src: io.NopCloser(src), fn: fn}
		for {
			if _, err := o.Read(buf); err != nil {
				break
			}
		}
	}
}

// The streaming redactor masks what maskAll masks in the whole body,
// however the body arrives, and it holds back only what may begin a value:
// once a read ends in bytes that begin no value, everything read so far
// has been given out.
func FuzzRedactorStreamEqualsWhole(f *testing.F) {
	f.Add([]byte("a secret-value-1 b secret-value-12 c secret-valu"), []byte("secret-value-1"), []byte("secret-value-12"), uint16(7))
	f.Add([]byte("data: one\n\ndata: tw"), []byte("two-secret"), []byte("one"), uint16(1))
	f.Add([]byte("aaaaab"), []byte("aab"), []byte("aaab"), uint16(2))
	f.Fuzz(func(t *testing.T, data, v1, v2 []byte, seed uint16) {
		var echoes []echo
		for i, v := range [][]byte{v1, v2} {
			if len(v) > 0 && len(v) <= 64 {
				echoes = append(echoes, newEcho(v, []byte(fmt.Sprintf("<P%d>", i))))
			}
		}
		if len(echoes) == 0 {
			return
		}
		want := maskAll(bytes.Clone(data), echoes)
		sizes := []int{int(seed%13) + 1, int(seed/13%7) + 1}
		r := newRedactor(io.NopCloser(&chunker{data: bytes.Clone(data), sizes: sizes}), &subst{echoes: echoes}, nil)
		got, err := io.ReadAll(r)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("streamed %q, whole %q (%v)", got, want, err)
		}
		// Fed the whole body in one read that ends in nothing that begins
		// a value, it gives everything out without reading again.
		if hold := holdBack(data, echoes); hold == 0 && len(data) > 0 {
			r2 := newRedactor(io.NopCloser(&stallAfter{data: bytes.Clone(data)}), &subst{echoes: echoes}, nil)
			buf := make([]byte, 4*len(data)+64)
			total := 0
			for total < len(want) {
				m, err := r2.Read(buf[total:])
				total += m
				if err != nil {
					break
				}
			}
			if !bytes.Equal(buf[:total], want) {
				t.Fatalf("before the end: %q, want %q", buf[:total], want)
			}
		}
	})
}

// stallAfter gives its data in one read, then fails the test if read
// again: the reader must not need more input to give out what it has.
type stallAfter struct {
	data []byte
	done bool
}

func (s *stallAfter) Read(p []byte) (int, error) {
	if s.done {
		panic("read again: bytes that begin no value were held back")
	}
	s.done = true
	return copy(p, s.data), nil
}
