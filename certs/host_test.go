package certs

import (
	"errors"
	"strings"
	"testing"
)

func TestNormalizeHost(t *testing.T) {
	cases := []struct {
		in, key string
		isIP    bool
	}{
		{"api.example.com", "api.example.com", false},
		{"API.Example.COM", "api.example.com", false},
		{"api.example.com:443", "api.example.com", false},
		{"api.example.com.", "api.example.com", false},
		{"api.example.com.:8443", "api.example.com", false},
		{"localhost", "localhost", false},
		{"my_bucket.s3.example.com", "my_bucket.s3.example.com", false},
		{"xn--bcher-kva.example", "xn--bcher-kva.example", false},
		{"1password.com", "1password.com", false},
		{"127.0.0.1", "127.0.0.1", true},
		{"127.0.0.1:443", "127.0.0.1", true},
		{"::1", "::1", true},
		{"[::1]", "::1", true},
		{"[::1]:8443", "::1", true},
		{"2001:DB8::1", "2001:db8::1", true},
		{"[2001:db8:0:0::1]:443", "2001:db8::1", true},
		{"::ffff:10.1.2.3", "10.1.2.3", true},
		{strings.Repeat("a", 63) + ".com", strings.Repeat("a", 63) + ".com", false},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			got, err := normalizeHost(tc.in)
			if err != nil {
				t.Fatalf("normalizeHost: %v", err)
			}
			if got.key != tc.key || got.ip.IsValid() != tc.isIP {
				t.Errorf("got key %q ip %v, want %q ip=%v", got.key, got.ip, tc.key, tc.isIP)
			}
		})
	}
}

func TestNormalizeHostRefuses(t *testing.T) {
	long := strings.Repeat("abcdefghi.", 26) + "com" // 263 bytes
	cases := []string{
		"",
		":443",
		".",
		"example.com:",
		"example.com:0",
		"example.com:65536",
		"example.com:https",
		"example.com:443:1",
		"a..b",
		".example.com",
		"example.com..",
		"exa mple.com",
		"*.example.com",
		"-api.example.com",
		"api-.example.com",
		"bücher.example",
		"\u212aelvin.example", // Kelvin sign: strings.ToLower would make it 'k'
		"example.com/path",
		"user@example.com",
		"127.1",
		"1.2.3.256",
		"fe80::1%eth0",
		"[fe80::1%25eth0]:443",
		"[127.0.0.1]",
		"[example.com]",
		"[::1",
		"[::1]443",
		"[::1]:",
		strings.Repeat("a", 64) + ".com",
		long,
	}
	for _, in := range cases {
		t.Run(in, func(t *testing.T) {
			got, err := normalizeHost(in)
			if !errors.Is(err, ErrInvalidHost) {
				t.Fatalf("normalizeHost(%q) = %+v, %v; want ErrInvalidHost", in, got, err)
			}
		})
	}
}

func FuzzNormalizeHost(f *testing.F) {
	for _, s := range []string{"api.example.com:443", "[::1]:80", "127.0.0.1", "A.B.", "*.x", "\u212a"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, err := normalizeHost(in)
		if err != nil {
			return
		}
		// Normalising is idempotent and yields a key a certificate can carry.
		again, err := normalizeHost(got.key)
		if err != nil || again != got {
			t.Fatalf("normalizeHost(%q) = %+v, but normalizing its key gives %+v, %v", in, got, again, err)
		}
		if got.key == "" || len(got.key) > maxNameLen || strings.ToLower(got.key) != got.key {
			t.Fatalf("normalizeHost(%q) = bad key %q", in, got.key)
		}
	})
}
