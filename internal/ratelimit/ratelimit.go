// Package ratelimit keeps token buckets per key (an API key, a client
// address, a sandbox) for the admin API, the Connect page and the proxy.
// The buckets are golang.org/x/time/rate limiters; this package bounds how
// many keys it remembers (least recently used go first, so a flood of new
// keys cannot grow memory) and answers how long a refused caller should
// wait (Retry-After).
package ratelimit

import (
	"math"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2/simplelru"
	"golang.org/x/time/rate"
)

// Limit is a bucket's shape: Rate tokens a second, at most Burst at once.
// A zero Rate means no limit.
type Limit struct {
	Rate  float64
	Burst int
}

// Unlimited reports whether l limits nothing.
func (l Limit) Unlimited() bool { return l.Rate <= 0 }

// Config configures New.
type Config struct {
	// Limit is the default bucket of every key.
	Limit Limit
	// MaxKeys bounds the keys remembered; zero means 100,000. A key
	// forgotten starts again with a full bucket.
	MaxKeys int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Limiter holds one bucket per key. It is safe for concurrent use.
type Limiter struct {
	cfg     Config
	mu      sync.Mutex
	buckets *lru.LRU[string, *rate.Limiter]
}

// New builds a Limiter.
func New(cfg Config) *Limiter {
	if cfg.MaxKeys <= 0 {
		cfg.MaxKeys = 100_000
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	b, _ := lru.NewLRU[string, *rate.Limiter](cfg.MaxKeys, nil) // size > 0: no error
	return &Limiter{cfg: cfg, buckets: b}
}

// Allow takes one token from key's bucket under the default limit.
func (l *Limiter) Allow(key string) (ok bool, retryAfter time.Duration) {
	return l.AllowWith(key, l.cfg.Limit)
}

// AllowWith takes one token from key's bucket, shaped by lim (a tenant's
// own limit); when the bucket is empty it takes nothing and says how long
// until a token is there.
func (l *Limiter) AllowWith(key string, lim Limit) (ok bool, retryAfter time.Duration) {
	if lim.Unlimited() {
		return true, 0
	}
	now := l.cfg.Now()
	b := l.bucket(key, lim)
	if b.AllowN(now, 1) { // no allocation on the way that passes
		return true, 0
	}
	return false, wait(b, now)
}

// wait is how long until b holds a whole token.
func wait(b *rate.Limiter, now time.Time) time.Duration {
	tokens := b.TokensAt(now)
	if tokens >= 1 || b.Limit() <= 0 {
		return 0
	}
	return time.Duration(math.Ceil((1-tokens)/float64(b.Limit())*1e9)) * time.Nanosecond
}

// Blocked reports whether key's bucket is empty now, without taking a
// token: for counting only failures (Fail) and refusing a caller who
// failed too often, before it tries again.
func (l *Limiter) Blocked(key string) (blocked bool, retryAfter time.Duration) {
	if l.cfg.Limit.Unlimited() {
		return false, 0
	}
	l.mu.Lock()
	b, ok := l.buckets.Get(key)
	l.mu.Unlock()
	if !ok {
		return false, 0
	}
	if d := wait(b, l.cfg.Now()); d > 0 {
		return true, d
	}
	return false, 0
}

// Fail takes one token from key's bucket, empty or not.
func (l *Limiter) Fail(key string) {
	if l.cfg.Limit.Unlimited() {
		return
	}
	now := l.cfg.Now()
	b := l.bucket(key, l.cfg.Limit)
	if !b.AllowN(now, 1) {
		// Already empty: push it further into debt, so that hammering
		// keeps the caller out (bounded by one burst of debt).
		if b.TokensAt(now) > -float64(b.Burst()) {
			b.ReserveN(now, 1)
		}
	}
}

// bucket finds or makes key's bucket. A key whose limit changed (a tenant
// raised or lowered its own) starts again with a full bucket of the new
// shape.
func (l *Limiter) bucket(key string, lim Limit) *rate.Limiter {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets.Get(key)
	if !ok || b.Limit() != rate.Limit(lim.Rate) || b.Burst() != max(lim.Burst, 1) {
		b = rate.NewLimiter(rate.Limit(lim.Rate), max(lim.Burst, 1))
		l.buckets.Add(key, b)
	}
	return b
}

// RetryAfterSeconds is d as the whole seconds of a Retry-After header, at
// least 1.
func RetryAfterSeconds(d time.Duration) int {
	return max(1, int(math.Ceil(d.Seconds())))
}
