package certs

import (
	"fmt"
	"testing"
)

// BenchmarkLeafMint measures a cold miss: every iteration asks for a host
// not seen before, so it pays for key generation and signing.
func BenchmarkLeafMint(b *testing.B) {
	c := newTestCache(b, testCA(b), LeafConfig{})
	i := 0
	for b.Loop() {
		if _, err := c.Get(fmt.Sprintf("h%d.example.com", i)); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkLeafCacheHit measures a warm host.
func BenchmarkLeafCacheHit(b *testing.B) {
	c := newTestCache(b, testCA(b), LeafConfig{})
	if _, err := c.Get("api.example.com:443"); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := c.Get("api.example.com:443"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLeafCacheHitParallel measures a warm host under concurrent
// connections, where the LRU's lock is shared.
func BenchmarkLeafCacheHitParallel(b *testing.B) {
	c := newTestCache(b, testCA(b), LeafConfig{})
	if _, err := c.Get("api.example.com:443"); err != nil {
		b.Fatal(err)
	}
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.Get("api.example.com:443"); err != nil {
				b.Fatal(err)
			}
		}
	})
}
