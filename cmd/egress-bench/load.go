package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

// target is what one phase's clients send, and through what.
type target struct {
	URL       string
	ProxyURL  *url.URL       // nil: direct
	Roots     *x509.CertPool // what the client trusts for the destination
	AuthValue string         // Authorization header value; "" for none
	Body      []byte         // nil: GET
}

// newClient is one keep-alive client with exactly one connection, like one
// sandbox process with its own HTTP client.
func newClient(t target) (*http.Client, *http.Transport) {
	tr := &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: t.Roots, MinVersion: tls.VersionTLS12},
		MaxIdleConnsPerHost: 1,
		MaxConnsPerHost:     1,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	if t.ProxyURL != nil {
		tr.Proxy = http.ProxyURL(t.ProxyURL)
		tr.DialContext = (&net.Dialer{}).DialContext
	} else {
		tr.DialContext = loopbackDial
	}
	return &http.Client{Transport: tr, Timeout: requestTimeout}, tr
}

// counters are read by the progress line while clients run.
type counters struct {
	done atomic.Int64 // requests answered 200, warm-up included
	errs atomic.Int64
}

// clientResult is what one client measured inside the window.
type clientResult struct {
	h        hist
	errs     int64
	firstErr string
}

// window is the measured part of a phase: requests that start at or after
// From and finish by To are counted.
type window struct{ Start, From, To time.Time }

// pace is one client's schedule in an open-loop run: a request every
// interval from first on. The zero pace is a closed loop: the next request
// as soon as the last is answered.
type pace struct {
	first    time.Time
	interval time.Duration
}

// drive runs one client until w.To (or ctx ends, or maxRequestsPerClient).
// Paced, a request's latency is measured from when it was due, not from
// when it was sent, so a client held up by a slow answer counts the wait
// of the requests behind it (no coordinated omission).
func drive(ctx context.Context, t target, w window, p pace, cnt *counters) *clientResult {
	c, tr := newClient(t)
	defer tr.CloseIdleConnections()
	r := &clientResult{}
	due := p.first
	for i := 0; i < maxRequestsPerClient && ctx.Err() == nil; i++ {
		t0 := time.Now()
		if p.interval > 0 {
			if !sleepUntil(ctx, due) {
				break
			}
			t0, due = due, due.Add(p.interval)
		}
		if !t0.Before(w.To) {
			break
		}
		err := once(ctx, c, t)
		t1 := time.Now()
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			r.errs++
			cnt.errs.Add(1)
			if r.firstErr == "" {
				r.firstErr = err.Error()
			}
			// A failing target must not turn this loop into a busy spin.
			select {
			case <-ctx.Done():
			case <-time.After(10 * time.Millisecond):
			}
			continue
		}
		cnt.done.Add(1)
		if !t0.Before(w.From) && !t1.After(w.To) {
			r.h.add(t1.Sub(t0))
		}
	}
	return r
}

func once(ctx context.Context, c *http.Client, t target) error {
	method := http.MethodGet
	var body io.Reader
	if t.Body != nil {
		method, body = http.MethodPost, bytes.NewReader(t.Body)
	}
	req, err := http.NewRequestWithContext(ctx, method, t.URL, body)
	if err != nil {
		return err
	}
	if t.AuthValue != "" {
		req.Header.Set("Authorization", t.AuthValue)
	}
	if t.Body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %s (X-Egress-Denied %q, X-Egress-Error %q)", resp.Status,
			resp.Header.Get("X-Egress-Denied"), resp.Header.Get("X-Egress-Error"))
	}
	return err
}

// load runs n clients over window w and merges what they measured. With a
// rate (requests a second, all clients together) each client sends on a
// schedule of its own, the clients' schedules spread evenly; zero runs
// each client in a closed loop.
func load(ctx context.Context, t target, n int, rate float64, w window, cnt *counters) (h *hist, errs int64, firstErr string) {
	results := make([]*clientResult, n)
	var wg sync.WaitGroup
	for i := range n {
		var p pace
		if rate > 0 {
			p.interval = time.Duration(float64(n) / rate * float64(time.Second))
			p.first = w.Start.Add(p.interval * time.Duration(i) / time.Duration(n))
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = drive(ctx, t, w, p, cnt)
		}()
	}
	wg.Wait()
	h = &hist{}
	for _, r := range results {
		h.merge(&r.h)
		errs += r.errs
		if firstErr == "" {
			firstErr = r.firstErr
		}
	}
	return h, errs, firstErr
}
