package pgstore

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/egressd/egressd/vault/storage"
)

// Defaults of the change listener's Options.
const (
	DefaultListenerTimeout = time.Second
	DefaultReconnectDelay  = 100 * time.Millisecond
	DefaultChangeRetention = 10 * time.Minute
	// MaxReconnectDelay bounds the listener's backoff between tries.
	MaxReconnectDelay = 5 * time.Second
)

// readPage is how many change rows the listener reads at a time.
const readPage = 1000

// listener is a Store's change listener (feed.go): one connection out of
// the pool, LISTENing on the schema's channel, run by one goroutine.
type listener struct {
	pool    *pgxpool.Pool // for pruning
	cfg     *pgx.ConnConfig
	q       feedQueries
	channel string
	origin  string
	opts    Options
	m       *feedMetrics

	subsMu sync.RWMutex
	subs   []func(topic string)

	// healthy is Healthy. It turns true in contact, once connected and
	// caught up; false at once when the connection is lost, and by the
	// watchdog when nothing was heard for ListenerTimeout.
	healthy  atomic.Bool
	mu       sync.Mutex // connected, okUntil, the watchdog's and contact's changes of healthy
	up       bool       // connected and caught up since
	okUntil  time.Time
	watchdog *time.Timer

	// The goroutine's own.
	conn  *pgx.Conn
	last  int64 // the highest seq seen
	first bool  // the first connection (Open's) is not a reconnect

	ctx     context.Context
	cancel  context.CancelFunc
	done    chan struct{}  // run ended
	pruning sync.WaitGroup // pruneLoop
}

func newListener(ctx context.Context, pool *pgxpool.Pool, opts Options, m *feedMetrics) *listener {
	cfg := pool.Config().ConnConfig
	name := cfg.RuntimeParams["application_name"]
	if name == "" {
		name = "egressd"
	}
	cfg.RuntimeParams["application_name"] = name + "-listener"
	channel := channelName(opts.Schema)
	l := &listener{
		pool: pool, cfg: cfg, q: newFeedQueries(opts.Schema, channel), channel: channel, origin: newOrigin(),
		opts: opts, m: m, first: true, done: make(chan struct{}),
	}
	l.ctx, l.cancel = context.WithCancel(context.WithoutCancel(ctx))
	l.watchdog = time.AfterFunc(time.Hour, l.expire)
	l.watchdog.Stop()
	return l
}

// start connects (the store's Open fails if that fails) and runs the loop.
func (l *listener) start(ctx context.Context) error {
	if err := l.connect(ctx); err != nil {
		l.cancel()
		close(l.done)
		return err
	}
	l.pruning.Add(1)
	go l.run()
	go l.pruneLoop()
	return nil
}

// stop ends the loop and closes the connection; Healthy is false after.
func (l *listener) stop() {
	l.cancel()
	<-l.done
	l.pruning.Wait()
	l.mu.Lock()
	l.up = false
	l.setHealthy(false)
	l.watchdog.Stop()
	l.mu.Unlock()
}

func (l *listener) run() {
	defer close(l.done)
	defer func() {
		if l.conn != nil {
			l.closeConn()
		}
	}()
	delay := l.opts.ReconnectDelay
	for l.ctx.Err() == nil {
		if l.conn == nil {
			if !l.sleep(delay) {
				return
			}
			if err := l.connect(l.ctx); err != nil {
				delay = min(2*delay, MaxReconnectDelay)
				continue
			}
			delay = l.opts.ReconnectDelay
		}
		if err := l.step(); err != nil && l.ctx.Err() == nil {
			l.lost()
		}
	}
}

// connect opens the connection, LISTENs, and catches up: on the first
// connection by taking the log's end as where it stands (nothing was
// cached before it), on a reconnect by delivering what it missed. Then
// it is healthy.
func (l *listener) connect(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, max(5*time.Second, l.opts.ListenerTimeout))
	defer cancel()
	conn, err := pgx.ConnectConfig(cctx, l.cfg)
	if err != nil {
		return fmt.Errorf("pgstore: change listener: connect: %w", err)
	}
	fail := func(what string, err error) error {
		conn.Close(context.Background())
		return fmt.Errorf("pgstore: change listener: %s: %w", what, err)
	}
	if _, err := conn.Exec(cctx, l.q.listen); err != nil {
		return fail("listen", err)
	}
	if l.first {
		if err := conn.QueryRow(cctx, l.q.position).Scan(&l.last); err != nil {
			return fail("read the change log's end", err)
		}
	} else if err := l.catchUp(cctx, conn); err != nil {
		return fail("catch up", err)
	}
	l.conn = conn
	if !l.first {
		l.m.reconnects.Inc()
	}
	l.first = false
	l.mu.Lock()
	l.up = true
	l.mu.Unlock()
	l.contact()
	return nil
}

// step waits for a notification up to a quarter of ListenerTimeout, then
// reads the log (unless the notification is of a change already read).
// An error means the connection is lost.
func (l *listener) step() error {
	wctx, cancel := context.WithTimeout(l.ctx, l.opts.ListenerTimeout/4)
	n, err := l.conn.WaitForNotification(wctx)
	cancel()
	switch {
	case err == nil:
		if seq, perr := strconv.ParseInt(n.Payload, 10, 64); perr == nil && seq <= l.last {
			l.contact()
			return nil
		}
	case l.ctx.Err() != nil:
		return err
	case !errors.Is(err, context.DeadlineExceeded) || l.conn.IsClosed():
		return err
	}
	rctx, cancel := context.WithTimeout(l.ctx, l.opts.ListenerTimeout)
	defer cancel()
	if err := l.catchUp(rctx, l.conn); err != nil {
		return err
	}
	l.contact()
	return nil
}

// change is one row of the log as read.
type change struct {
	topic string
	// age is the seconds since the row was written, at the server's
	// clock as it ran the read: the lag metric adds the local time from
	// sending the read to the delivery, so no two clocks are compared
	// (an upper bound, by the read's way to the server).
	age float64
}

// catchUp reads every row after l.last, page by page, and delivers their
// topics. If the log was pruned past l.last, or went back below it (a
// schema made anew), it delivers TopicAll alone: that covers every row up
// to the highest of the snapshot it read, where it then stands.
func (l *listener) catchUp(ctx context.Context, conn *pgx.Conn) error {
	for {
		start := time.Now()
		rows, err := conn.Query(ctx, l.q.read, l.last, readPage)
		if err != nil {
			return err
		}
		var (
			through, top int64
			n            int
			last         = l.last
			got          []change
		)
		for rows.Next() {
			var (
				seq           *int64
				topic, origin *string
				age           *float64
			)
			if err := rows.Scan(&through, &top, &seq, &topic, &origin, &age); err != nil {
				rows.Close()
				return err
			}
			if seq == nil {
				continue
			}
			n++
			last = *seq
			if *origin != l.origin {
				got = append(got, change{topic: *topic, age: *age})
			}
		}
		if err := rows.Err(); err != nil {
			return err
		}
		all := through > l.last || max(top, through) < l.last
		if all {
			last = max(top, through)
		}
		l.deliver(got, all)
		l.last = last
		for _, c := range got {
			l.m.lag.Observe(c.age + time.Since(start).Seconds())
		}
		if all || n < readPage {
			return nil
		}
	}
}

// deliver calls the subscribers with each topic once (or TopicAll alone).
func (l *listener) deliver(got []change, all bool) {
	if len(got) == 0 && !all {
		return
	}
	l.subsMu.RLock()
	subs := l.subs
	l.subsMu.RUnlock()
	if all {
		for _, fn := range subs {
			fn(storage.TopicAll)
		}
		return
	}
	seen := make(map[string]bool, len(got))
	for _, c := range got {
		if seen[c.topic] {
			continue
		}
		seen[c.topic] = true
		for _, fn := range subs {
			fn(c.topic)
		}
	}
}

// contact records that the listener heard from the server and is caught
// up: healthy until ListenerTimeout from now, unless heard from again.
func (l *listener) contact() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.okUntil = time.Now().Add(l.opts.ListenerTimeout)
	l.watchdog.Reset(l.opts.ListenerTimeout)
	if l.up {
		l.setHealthy(true)
	}
}

// expire is the watchdog: nothing heard within ListenerTimeout (the
// connection may be half-open, or the server slow) means changes may be
// missed.
func (l *listener) expire() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !time.Now().Before(l.okUntil) {
		l.setHealthy(false)
	}
}

// lost: the connection failed. Healthy turns false at once.
func (l *listener) lost() {
	l.mu.Lock()
	l.up = false
	l.setHealthy(false)
	l.mu.Unlock()
	l.closeConn()
}

func (l *listener) closeConn() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.conn.Close(ctx)
	l.conn = nil
}

// setHealthy is called with mu held.
func (l *listener) setHealthy(ok bool) {
	if l.healthy.Swap(ok) != ok {
		if ok {
			l.m.up.Set(1)
		} else {
			l.m.up.Set(0)
		}
	}
}

// sleep waits about d (±20%), or until the store closes (false).
func (l *listener) sleep(d time.Duration) bool {
	d = time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-l.ctx.Done():
		return false
	}
}

// pruneLoop deletes the log's rows older than ChangeRetention, every
// tenth of it (between 1s and a minute, jittered), through the pool.
// Every replica prunes; a failure waits for the next round.
func (l *listener) pruneLoop() {
	defer l.pruning.Done()
	every := min(max(l.opts.ChangeRetention/10, time.Second), time.Minute)
	for l.sleep(every) {
		l.prune()
	}
}

// prune deletes the rows older than ChangeRetention once.
func (l *listener) prune() error {
	ctx, cancel := context.WithTimeout(l.ctx, l.opts.TxTimeout)
	defer cancel()
	_, err := l.pool.Exec(ctx, l.q.prune, l.opts.ChangeRetention.Seconds())
	return err
}
