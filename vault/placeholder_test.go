package vault

import (
	"errors"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
)

var placeholderRE = regexp.MustCompile(`^EGP_[A-Za-z0-9]{32}$`)

func TestEnsurePlaceholders(t *testing.T) {
	s := openTest(t)
	tn := mustTenant(t, s, "acme")
	sbx, _ := mustSandbox(t, s, tn.ID, SandboxInput{})
	other, _ := mustSandbox(t, s, tn.ID, SandboxInput{})
	sec := mustUpsert(t, s, tn.ID, SecretInput{Name: "openai", Value: "v1", Scope: ScopeTenant, PlaceholderPrefix: "sk-proj-", AllowedHosts: []string{"api.example.com"}}).Secret
	want := map[string]string{"openai": "sk-proj-", "plain": "", "gh": "ghp_"}
	phs, err := s.EnsurePlaceholders(tn.ID, sbx.ID, want)
	if err != nil {
		t.Fatal(err)
	}
	if len(phs) != len(want) {
		t.Fatalf("got %v", phs)
	}
	seen := map[string]bool{}
	for name, text := range phs {
		pre := want[name]
		core, ok := strings.CutPrefix(text, pre)
		if !ok || !placeholderRE.MatchString(core) || len(text) != len(pre)+PlaceholderCoreLen {
			t.Errorf("%s: %q is not %q + EGP_ + 32 alnum", name, text, pre)
		}
		if PlaceholderCore(text) != core {
			t.Errorf("%s: PlaceholderCore(%q) = %q", name, text, PlaceholderCore(text))
		}
		if strings.Trim(core, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_") != "" {
			t.Errorf("%s: core %q has characters outside [A-Za-z0-9_]", name, core)
		}
		if seen[core] {
			t.Errorf("core %q issued twice", core)
		}
		seen[core] = true
		for _, q := range []string{text, core, "Bearer " + text, "https://x/?k=" + core + "&a=b"} {
			p, err := s.LookupPlaceholder(q)
			if err != nil || p.Text != text || p.Name != name || p.SandboxID != sbx.ID || p.TenantID != tn.ID {
				t.Errorf("lookup %q: %+v %v", q, p, err)
			}
		}
	}
	// Stable: the same text on a second call, after rotation, upsert,
	// disable, and with another prefix asked for.
	same := func(when string) {
		t.Helper()
		again, err := s.EnsurePlaceholders(tn.ID, sbx.ID, want)
		if err != nil || !reflect.DeepEqual(again, phs) {
			t.Fatalf("%s: %v %v, want %v", when, again, err, phs)
		}
	}
	same("second call")
	if _, err := s.RotateSecret(tn.ID, sec.ID, RotateInput{Value: "v2"}); err != nil {
		t.Fatal(err)
	}
	same("after rotation")
	mustUpsert(t, s, tn.ID, SecretInput{Name: "openai", Value: "v3", Scope: ScopeTenant, PlaceholderPrefix: "other-", AllowedHosts: []string{"api.example.com"}})
	same("after upsert with another prefix")
	s.SetDisabled(tn.ID, sec.ID, true)
	same("after disable")
	sub, err := s.EnsurePlaceholders(tn.ID, sbx.ID, map[string]string{"openai": "zzz"})
	if err != nil || sub["openai"] != phs["openai"] || len(sub) != 1 {
		t.Fatalf("subset: %v %v", sub, err)
	}
	// Per sandbox: the same name in another sandbox is another placeholder.
	o, err := s.EnsurePlaceholders(tn.ID, other.ID, want)
	if err != nil {
		t.Fatal(err)
	}
	for name := range want {
		if o[name] == phs[name] {
			t.Errorf("%s: two sandboxes share a placeholder", name)
		}
	}
	err = s.Read(func(r *Reader) error {
		if got := r.Placeholders(sbx.ID); !reflect.DeepEqual(got, phs) {
			t.Errorf("Reader.Placeholders: %v", got)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if empty, err := s.EnsurePlaceholders(tn.ID, sbx.ID, nil); err != nil || len(empty) != 0 {
		t.Fatalf("no names: %v %v", empty, err)
	}
	for _, bad := range []string{"", "nope", "EGP_short", "egp_" + strings.Repeat("a", 32), "EGP_" + strings.Repeat("a", 31) + "-", "EGP_" + strings.Repeat("a", 32)} {
		if _, err := s.LookupPlaceholder(bad); !errors.Is(err, ErrNotFound) {
			t.Errorf("lookup %q: %v", bad, err)
		}
	}
	checkRefusals(t, s, tn.ID, []refusal{
		{"bad name", "name", ErrInvalid, func() error {
			_, err := s.EnsurePlaceholders(tn.ID, sbx.ID, map[string]string{"new": "", "a b": ""})
			return err
		}},
		{"bad prefix", "name", ErrInvalid, func() error {
			_, err := s.EnsurePlaceholders(tn.ID, sbx.ID, map[string]string{"new": "a/b"})
			return err
		}},
		{"unknown sandbox", "", ErrNotFound, func() error {
			_, err := s.EnsurePlaceholders(tn.ID, "sbx_nope", map[string]string{"new": ""})
			return err
		}},
	})
}

// Concurrent first calls agree on one placeholder per name.
func TestEnsurePlaceholdersConcurrent(t *testing.T) {
	s := openTest(t)
	tn := mustTenant(t, s, "acme")
	sbx, _ := mustSandbox(t, s, tn.ID, SandboxInput{})
	names := map[string]string{"a": "", "b": "p_", "c": ""}
	results := make([]map[string]string, 16)
	var wg sync.WaitGroup
	for i := range results {
		wg.Go(func() {
			m, err := s.EnsurePlaceholders(tn.ID, sbx.ID, names)
			if err != nil {
				t.Error(err)
			}
			results[i] = m
		})
	}
	wg.Wait()
	for _, m := range results[1:] {
		if !reflect.DeepEqual(m, results[0]) {
			t.Fatalf("concurrent calls disagree: %v vs %v", m, results[0])
		}
	}
}

func TestPlaceholderCoreAt(t *testing.T) {
	core := "EGP_" + strings.Repeat("aZ9", 10) + "xy"
	for _, c := range []struct {
		b    string
		i    int
		want bool
	}{
		{core, 0, true},
		{"sk-" + core, 3, true},
		{"sk-" + core, 0, false},
		{core + "more", 0, true},
		{core[:len(core)-1], 0, false},
		{core, -1, false},
		{core, 1, false},
		{core, len(core), false},
		{core, len(core) + 5, false},
		{"", 0, false},
		{strings.Replace(core, "a", "-", 1), 0, false},
		{strings.Replace(core, "a", "_", 1), 0, false},
		{"egp_" + core[4:], 0, false},
	} {
		if got := PlaceholderCoreAt([]byte(c.b), c.i); got != c.want {
			t.Errorf("PlaceholderCoreAt(%q, %d) = %v", c.b, c.i, got)
		}
	}
	if PlaceholderCore("nothing here") != "" || PlaceholderCore("EGP_"+"x") != "" {
		t.Error("PlaceholderCore found a core in text without one")
	}
}

// referenceCoreAt is the obvious definition PlaceholderCoreAt must agree with.
var coreRE = regexp.MustCompile(`^EGP_[A-Za-z0-9]{32}`)

func referenceCoreAt(b []byte, i int) bool {
	return i >= 0 && i <= len(b) && coreRE.Match(b[i:])
}

func FuzzPlaceholderCoreAt(f *testing.F) {
	core := "EGP_" + strings.Repeat("Ab1", 10) + "zz"
	for _, seed := range []struct {
		b string
		i int
	}{{core, 0}, {"x" + core, 1}, {core[:20], 0}, {"", 0}, {core, -3}, {core, 99}, {"EGP_", 0}, {"EGP_" + strings.Repeat("\xff", 32), 0}} {
		f.Add([]byte(seed.b), seed.i)
	}
	f.Fuzz(func(t *testing.T, b []byte, i int) {
		got := PlaceholderCoreAt(b, i)
		if want := referenceCoreAt(b, i); got != want {
			t.Fatalf("PlaceholderCoreAt(%q, %d) = %v, reference says %v", b, i, got, want)
		}
		c := PlaceholderCore(string(b))
		if c != "" && !coreRE.MatchString(c) {
			t.Fatalf("PlaceholderCore(%q) = %q", b, c)
		}
	})
}

func FuzzParseMasterKey(f *testing.F) {
	k := NewMasterKey()
	for _, seed := range keyForms(k) {
		f.Add([]byte(seed))
	}
	for _, seed := range []string{"", " ", "=", "====", strings.Repeat("A", 43) + "=", strings.Repeat("0", 64), strings.Repeat("g", 64), "\x00\xff"} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, text []byte) {
		k, err := ParseMasterKey(text)
		if err != nil {
			if k != nil || !errors.Is(err, ErrBadMasterKey) {
				t.Fatalf("error %v with key %v", err, k)
			}
			if len(text) > 8 && strings.Contains(err.Error(), string(text)) {
				t.Fatalf("error echoes the input: %v", err)
			}
			return
		}
		if len(k.ID()) != 16 {
			t.Fatalf("id %q", k.ID())
		}
		// Its file form parses back to the same key.
		again, err := ParseMasterKey([]byte(keyForms(k)[2]))
		if err != nil || !again.Equal(k) || again.ID() != k.ID() {
			t.Fatalf("hex form of a parsed key: %v", err)
		}
	})
}
