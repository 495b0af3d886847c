package certs

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"
)

func newTestCache(t testing.TB, ca *CA, cfg LeafConfig) *LeafCache {
	t.Helper()
	c, err := NewLeafCache(ca, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestNewLeafCacheConfig(t *testing.T) {
	ca := testCA(t)
	t.Run("zero value gets the defaults", func(t *testing.T) {
		c := newTestCache(t, ca, LeafConfig{})
		if c.validity != DefaultLeafValidity || c.now == nil {
			t.Errorf("validity %s, now set %v", c.validity, c.now != nil)
		}
		for i := range DefaultLeafCacheSize + 1 {
			c.cache.Add(fmt.Sprint(i), nil)
		}
		if c.Len() != DefaultLeafCacheSize {
			t.Errorf("zero Size holds %d entries, want %d", c.Len(), DefaultLeafCacheSize)
		}
	})
	refused := []struct {
		name string
		ca   *CA
		cfg  LeafConfig
	}{
		{"no CA", nil, LeafConfig{}},
		{"negative size", ca, LeafConfig{Size: -1}},
		{"negative validity", ca, LeafConfig{Validity: -time.Hour}},
		{"validity below the renewal margin", ca, LeafConfig{Validity: 90 * time.Minute}},
		{"validity over 825 days", ca, LeafConfig{Validity: 826 * 24 * time.Hour}},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewLeafCache(tc.ca, tc.cfg); !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("NewLeafCache = %v, want ErrInvalidConfig", err)
			}
		})
	}
}

func TestLeafVerifies(t *testing.T) {
	ca := testCA(t)
	clock := &fakeClock{t: time.Now().Truncate(time.Second)}
	c := newTestCache(t, ca, LeafConfig{Now: clock.Now})
	cases := []struct {
		host, verifyAs string
		ip             bool
	}{
		{"api.example.com", "api.example.com", false},
		{"API.Example.com:443", "api.example.com", false},
		{"api.example.com.", "api.example.com", false},
		{"127.0.0.1", "127.0.0.1", true},
		{"127.0.0.1:8443", "127.0.0.1", true},
		{"[::1]:443", "::1", true},
		{"2001:db8::1", "2001:db8::1", true},
	}
	for _, tc := range cases {
		t.Run(tc.host, func(t *testing.T) {
			cert, err := c.Get(tc.host)
			if err != nil {
				t.Fatal(err)
			}
			leaf := cert.Leaf
			if leaf == nil {
				t.Fatal("Leaf not set")
			}
			if len(cert.Certificate) != 2 || !bytes.Equal(cert.Certificate[0], leaf.Raw) ||
				!bytes.Equal(cert.Certificate[1], ca.Certificate().Raw) {
				t.Fatal("chain is not [leaf, CA]")
			}
			key, ok := cert.PrivateKey.(*ecdsa.PrivateKey)
			if !ok || key.Curve != elliptic.P256() || !key.PublicKey.Equal(leaf.PublicKey) {
				t.Fatal("private key is not the P-256 key of the leaf")
			}
			opts := x509.VerifyOptions{
				DNSName:     tc.verifyAs,
				Roots:       rootPool(ca),
				CurrentTime: clock.Now(),
				KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			}
			if _, err := leaf.Verify(opts); err != nil {
				t.Fatalf("leaf does not verify as %q: %v", tc.verifyAs, err)
			}
			opts.DNSName = "other.example.com"
			if _, err := leaf.Verify(opts); err == nil {
				t.Fatal("leaf verifies for another host")
			}
			if tc.ip != (len(leaf.IPAddresses) == 1 && len(leaf.DNSNames) == 0) {
				t.Errorf("SANs: DNS %v IP %v, want an IP SAN only: %v", leaf.DNSNames, leaf.IPAddresses, tc.ip)
			}
			if tc.ip && !leaf.IPAddresses[0].Equal(net.ParseIP(tc.verifyAs)) {
				t.Errorf("IP SAN %v, want %s", leaf.IPAddresses[0], tc.verifyAs)
			}
			if !leaf.NotBefore.Equal(clock.Now().Add(-time.Hour)) || !leaf.NotAfter.Equal(clock.Now().Add(DefaultLeafValidity)) {
				t.Errorf("validity [%s, %s], want an hour back to 7 days ahead of %s", leaf.NotBefore, leaf.NotAfter, clock.Now())
			}
			if leaf.IsCA || leaf.SerialNumber.Sign() <= 0 || leaf.SerialNumber.BitLen() > 128 {
				t.Errorf("IsCA %v serial %v", leaf.IsCA, leaf.SerialNumber)
			}
		})
	}
}

func TestLeafGetRefusesInvalidHost(t *testing.T) {
	c := newTestCache(t, testCA(t), LeafConfig{})
	for _, host := range []string{"", ":443", "*.example.com", "exa mple.com", "fe80::1%eth0"} {
		t.Run(host, func(t *testing.T) {
			if _, err := c.Get(host); !errors.Is(err, ErrInvalidHost) {
				t.Fatalf("Get(%q) = %v, want ErrInvalidHost", host, err)
			}
		})
	}
	if c.Len() != 0 || c.minted.Load() != 0 {
		t.Errorf("refused hosts left %d entries and %d mints", c.Len(), c.minted.Load())
	}
}

func TestLeafCacheHit(t *testing.T) {
	c := newTestCache(t, testCA(t), LeafConfig{})
	first, err := c.Get("api.example.com")
	if err != nil {
		t.Fatal(err)
	}
	for _, host := range []string{"api.example.com", "API.EXAMPLE.COM:443", "api.example.com."} {
		t.Run(host, func(t *testing.T) {
			got, err := c.Get(host)
			if err != nil {
				t.Fatal(err)
			}
			if got != first {
				t.Error("cache hit returned another certificate")
			}
		})
	}
	if n := c.minted.Load(); n != 1 {
		t.Errorf("minted %d leaves, want 1", n)
	}
}

func TestLeafSingleflight(t *testing.T) {
	c := newTestCache(t, testCA(t), LeafConfig{})
	release := make(chan struct{})
	c.beforeMint = func(string) { <-release } // hold the first mint until every caller is waiting
	const callers = 50
	var started, done sync.WaitGroup
	certs := make([]any, callers)
	errs := make([]error, callers)
	started.Add(callers)
	for i := range callers {
		done.Go(func() {
			started.Done()
			certs[i], errs[i] = c.Get("cold.example.com")
		})
	}
	started.Wait()
	time.Sleep(20 * time.Millisecond) // let the callers reach the flight
	close(release)
	done.Wait()
	for i := range callers {
		if errs[i] != nil {
			t.Fatalf("caller %d: %v", i, errs[i])
		}
		if certs[i] != certs[0] {
			t.Fatalf("caller %d got another certificate", i)
		}
	}
	if n := c.minted.Load(); n != 1 {
		t.Fatalf("%d concurrent misses minted %d leaves, want 1", callers, n)
	}
}

func TestLeafLRUBound(t *testing.T) {
	const size = 3
	c := newTestCache(t, testCA(t), LeafConfig{Size: size})
	first := map[string]any{}
	for i := range 10 {
		host := fmt.Sprintf("h%d.example.com", i)
		cert, err := c.Get(host)
		if err != nil {
			t.Fatal(err)
		}
		first[host] = cert
		if c.Len() > size {
			t.Fatalf("cache holds %d entries, bound is %d", c.Len(), size)
		}
	}
	if c.Len() != size {
		t.Fatalf("Len = %d, want %d", c.Len(), size)
	}
	cases := []struct {
		host string
		hit  bool
	}{
		{"h9.example.com", true},
		{"h8.example.com", true},
		{"h7.example.com", true},
		{"h0.example.com", false}, // evicted long ago
	}
	for _, tc := range cases {
		t.Run(tc.host, func(t *testing.T) {
			before := c.minted.Load()
			cert, err := c.Get(tc.host)
			if err != nil {
				t.Fatal(err)
			}
			if hit := cert == first[tc.host] && c.minted.Load() == before; hit != tc.hit {
				t.Errorf("hit = %v, want %v", hit, tc.hit)
			}
		})
	}
}

func TestLeafExpiryRemint(t *testing.T) {
	clock := &fakeClock{t: time.Now().Truncate(time.Second)} // certificates hold whole seconds
	c := newTestCache(t, testCA(t), LeafConfig{Validity: 24 * time.Hour, Now: clock.Now})
	orig, err := c.Get("api.example.com")
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name    string
		advance time.Duration
		same    bool
	}{
		{"22h in: two hours left", 22 * time.Hour, true},
		{"23h in: exactly one hour left", time.Hour, true},
		{"a second later: under an hour left", time.Second, false},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			clock.Advance(s.advance)
			got, err := c.Get("api.example.com")
			if err != nil {
				t.Fatal(err)
			}
			if (got == orig) != s.same {
				t.Fatalf("same certificate = %v, want %v", got == orig, s.same)
			}
			if !s.same && !got.Leaf.NotAfter.Equal(clock.Now().Add(24*time.Hour)) {
				t.Errorf("re-minted leaf expires %s, want %s", got.Leaf.NotAfter, clock.Now().Add(24*time.Hour))
			}
		})
	}
	if n := c.minted.Load(); n != 2 {
		t.Errorf("minted %d, want 2", n)
	}
	// A clock set back past NotBefore must not serve a not-yet-valid leaf.
	cur, _ := c.Get("api.example.com")
	clock.Advance(-3 * time.Hour)
	if got, _ := c.Get("api.example.com"); got == cur {
		t.Error("served a leaf that is not valid yet")
	}
}

func TestLeafBoundedByCA(t *testing.T) {
	now := time.Now().Truncate(time.Second)
	key := newKey(t)
	der := selfSigned(t, key, func(c *x509.Certificate) {
		c.NotBefore, c.NotAfter = now.Add(-time.Minute), now.Add(72*time.Hour)
	})
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := newCA(cert, key, now)
	if err != nil {
		t.Fatal(err)
	}
	clock := &fakeClock{t: now}
	c := newTestCache(t, ca, LeafConfig{Now: clock.Now})
	leaf, err := c.Get("api.example.com")
	if err != nil {
		t.Fatal(err)
	}
	if !leaf.Leaf.NotAfter.Equal(cert.NotAfter) || !leaf.Leaf.NotBefore.Equal(cert.NotBefore) {
		t.Errorf("leaf [%s, %s] not clamped to CA [%s, %s]", leaf.Leaf.NotBefore, leaf.Leaf.NotAfter, cert.NotBefore, cert.NotAfter)
	}
	clock.Advance(73 * time.Hour)
	if _, err := c.Get("api.example.com"); !errors.Is(err, ErrCAExpired) {
		t.Errorf("Get after the CA expired = %v, want ErrCAExpired", err)
	}
}
