package ratelimit

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newClock() *clock { return &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }

func TestAllowBurstThenRate(t *testing.T) {
	c := newClock()
	l := New(Config{Limit: Limit{Rate: 2, Burst: 3}, Now: c.now})
	for i := range 3 {
		if ok, _ := l.Allow("k"); !ok {
			t.Fatalf("burst token %d refused", i)
		}
	}
	ok, wait := l.Allow("k")
	if ok || wait != 500*time.Millisecond {
		t.Fatalf("past the burst: ok %v wait %v", ok, wait)
	}
	if ok, _ := l.Allow("other"); !ok {
		t.Fatal("another key shares the bucket")
	}
	c.add(500 * time.Millisecond)
	if ok, _ := l.Allow("k"); !ok {
		t.Fatal("a refilled token refused")
	}
	if ok, _ := l.Allow("k"); ok {
		t.Fatal("a refusal took no token back: two tokens from one refill")
	}
}

func TestAllowWithReshapes(t *testing.T) {
	c := newClock()
	l := New(Config{Limit: Limit{Rate: 1, Burst: 1}, Now: c.now})
	if ok, _ := l.AllowWith("t", Limit{}); !ok {
		t.Fatal("an unlimited limit refused")
	}
	wide := Limit{Rate: 100, Burst: 10}
	for i := range 10 {
		if ok, _ := l.AllowWith("t", wide); !ok {
			t.Fatalf("token %d of a wider limit refused", i)
		}
	}
	if ok, _ := l.AllowWith("t", wide); ok {
		t.Fatal("past the wider burst")
	}
	// A changed limit starts with a full bucket.
	if ok, _ := l.AllowWith("t", Limit{Rate: 1, Burst: 1}); !ok {
		t.Fatal("a reshaped bucket starts empty")
	}
}

func TestFailAndBlocked(t *testing.T) {
	c := newClock()
	l := New(Config{Limit: Limit{Rate: 1, Burst: 5}, Now: c.now})
	if b, _ := l.Blocked("ip"); b {
		t.Fatal("an unknown key is blocked")
	}
	for range 5 {
		l.Fail("ip")
	}
	b, wait := l.Blocked("ip")
	if !b || wait != time.Second {
		t.Fatalf("after 5 failures: blocked %v wait %v", b, wait)
	}
	// Hammering pushes the wait out, at most one burst.
	for range 20 {
		l.Fail("ip")
	}
	if _, wait := l.Blocked("ip"); wait != 6*time.Second {
		t.Fatalf("after hammering: wait %v", wait)
	}
	c.add(6 * time.Second)
	if b, _ := l.Blocked("ip"); b {
		t.Fatal("still blocked after the wait")
	}
}

func TestMaxKeysBounded(t *testing.T) {
	c := newClock()
	l := New(Config{Limit: Limit{Rate: 1, Burst: 1}, MaxKeys: 100, Now: c.now})
	for i := range 10_000 {
		l.Allow(fmt.Sprint("k", i))
	}
	if n := l.buckets.Len(); n != 100 {
		t.Fatalf("%d buckets kept", n)
	}
}

func TestRetryAfterSeconds(t *testing.T) {
	for d, want := range map[time.Duration]int{0: 1, time.Millisecond: 1, time.Second: 1, 1500 * time.Millisecond: 2} {
		if got := RetryAfterSeconds(d); got != want {
			t.Errorf("%v: %d, want %d", d, got, want)
		}
	}
}

func TestConcurrent(t *testing.T) {
	l := New(Config{Limit: Limit{Rate: 1e-9, Burst: 100}})
	var wg sync.WaitGroup
	var mu sync.Mutex
	allowed := 0
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				if ok, _ := l.Allow("k"); ok {
					mu.Lock()
					allowed++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if allowed != 100 {
		t.Fatalf("%d allowed from a burst of 100", allowed)
	}
}
