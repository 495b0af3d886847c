package pgstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/egressd/egressd/internal/pgtest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/egressd/egressd/vault/storage"
)

var tb = []byte("things")

// openReplicas opens n stores on one schema, as n replicas would.
func openReplicas(t *testing.T, n int, opts Options) []*Store {
	dsn := testDSN(t)
	opts.Schema = freshSchema(t, dsn)
	var ss []*Store
	for range n {
		ss = append(ss, openTest(t, opts))
	}
	return ss
}

// Updates of two replicas are serial with each other, as one store's are.
func TestUpdatesSerialAcrossReplicas(t *testing.T) {
	ss := openReplicas(t, 2, Options{})
	if err := ss[0].EnsureBuckets(tb); err != nil {
		t.Fatal(err)
	}
	const each = 15
	var wg sync.WaitGroup
	for i := range 6 {
		s := ss[i%2]
		wg.Go(func() {
			for range each {
				err := s.Update(func(tx storage.Tx) error {
					b := tx.Bucket(tb)
					n, _ := strconv.Atoi(string(b.Get([]byte("n"))))
					time.Sleep(200 * time.Microsecond)
					return b.Put([]byte("n"), []byte(strconv.Itoa(n+1)))
				})
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	for i, s := range ss {
		s.View(func(tx storage.Tx) error {
			if got := string(tx.Bucket(tb).Get([]byte("n"))); got != strconv.Itoa(6*each) {
				t.Errorf("replica %d reads n=%s, want %d", i, got, 6*each)
			}
			return nil
		})
	}
}

// A bucket that another replica made is found (the store asks the
// database for a name it has not seen).
func TestBucketOfAnotherReplica(t *testing.T) {
	ss := openReplicas(t, 2, Options{})
	ss[1].View(func(tx storage.Tx) error {
		if tx.Bucket(tb) != nil {
			t.Error("a bucket nobody made is there")
		}
		return nil
	})
	if err := ss[0].EnsureBuckets(tb); err != nil {
		t.Fatal(err)
	}
	if err := ss[1].Update(func(tx storage.Tx) error {
		b := tx.Bucket(tb)
		if b == nil {
			return errors.New("replica 1 does not see the bucket replica 0 made")
		}
		return b.Put([]byte("k"), []byte("v"))
	}); err != nil {
		t.Fatal(err)
	}
}

func TestBucketNames(t *testing.T) {
	s := openTest(t, Options{})
	for _, name := range [][]byte{{}, []byte("a\x00b"), {0xff, 0xfe}, bytes.Repeat([]byte("b"), 256)} {
		if err := s.EnsureBuckets(name); !errors.Is(err, ErrBucketName) {
			t.Errorf("EnsureBuckets(%q) = %v, want ErrBucketName", name, err)
		}
	}
	if err := s.EnsureBuckets([]byte("ünïcode"), bytes.Repeat([]byte("b"), 255)); err != nil {
		t.Fatal(err)
	}
	s.View(func(tx storage.Tx) error {
		if tx.Bucket([]byte("a\x00b")) != nil || tx.Bucket([]byte("ünïcode")) == nil {
			t.Error("Bucket answers wrongly for an invalid or a valid name")
		}
		return nil
	})
}

// A transaction that runs past TxTimeout fails and changes nothing; so
// does an Update that waits for the update lock that long.
func TestTxTimeout(t *testing.T) {
	ss := openReplicas(t, 2, Options{TxTimeout: 300 * time.Millisecond})
	s := ss[0]
	if err := s.EnsureBuckets(tb); err != nil {
		t.Fatal(err)
	}
	err := s.Update(func(tx storage.Tx) error {
		time.Sleep(500 * time.Millisecond)
		return tx.Bucket(tb).Put([]byte("late"), []byte("v"))
	})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("an Update past its timeout: %v, want context.DeadlineExceeded", err)
	}
	// The other replica holds the lock; this one waits, then gives up.
	held, release := make(chan struct{}), make(chan struct{})
	go ss[1].Update(func(tx storage.Tx) error {
		close(held)
		<-release
		return nil
	})
	<-held
	start := time.Now()
	err = s.Update(func(tx storage.Tx) error { return tx.Bucket(tb).Put([]byte("waited"), []byte("v")) })
	close(release)
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 2*time.Second {
		t.Errorf("an Update waiting for the lock: %v after %v, want context.DeadlineExceeded after 300ms", err, time.Since(start))
	}
	if err := s.Update(func(tx storage.Tx) error { return tx.Bucket(tb).Put([]byte("on time"), []byte("v")) }); err != nil {
		t.Fatalf("an Update after the timeouts: %v", err)
	}
	s.View(func(tx storage.Tx) error {
		b := tx.Bucket(tb)
		if b.Get([]byte("late")) != nil || b.Get([]byte("waited")) != nil || b.Get([]byte("on time")) == nil {
			t.Error("a timed-out Update left a write")
		}
		return nil
	})
}

var errNotFound = errors.New("not found")

// A statement that fails fails its transaction: View and Update return the
// database's error, not what fn made of the nil that Get answered.
func TestFailedStatementFailsTransaction(t *testing.T) {
	s := openTest(t, Options{})
	if err := s.EnsureBuckets(tb); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	kv := pgx.Identifier{s.Schema(), "kv"}.Sanitize()
	if _, err := s.Pool().Exec(ctx, "ALTER TABLE "+kv+" RENAME TO kv_away"); err != nil {
		t.Fatal(err)
	}
	lookup := func(tx storage.Tx) error {
		if tx.Bucket(tb).Get([]byte("k")) == nil {
			return errNotFound
		}
		return nil
	}
	for name, run := range map[string]func(func(storage.Tx) error) error{"View": s.View, "Update": s.Update} {
		err := run(lookup)
		if err == nil || errors.Is(err, errNotFound) || !strings.Contains(err.Error(), "pgstore: get") {
			t.Errorf("%s with the table gone: %v, want the database's error", name, err)
		}
	}
	walked := 0
	err := s.Update(func(tx storage.Tx) error {
		c := tx.Bucket(tb).Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			walked++
		}
		return tx.Bucket(tb).Put([]byte("k"), []byte("v"))
	})
	if err == nil || walked != 0 {
		t.Errorf("Update walking with the table gone: %v after %d keys", err, walked)
	}
	if _, err := s.Pool().Exec(ctx, "ALTER TABLE "+pgx.Identifier{s.Schema(), "kv_away"}.Sanitize()+" RENAME TO kv"); err != nil {
		t.Fatal(err)
	}
	if err := s.Update(func(tx storage.Tx) error { return tx.Bucket(tb).Put([]byte("k"), []byte("v")) }); err != nil {
		t.Fatalf("Update after the table is back: %v", err)
	}
	if err := s.View(lookup); err != nil {
		t.Fatal(err)
	}
}

// With pgx's simple protocol (set in the DSN, as behind a pooler in
// transaction mode), results come as text: cursors decode them.
func TestSimpleProtocol(t *testing.T) {
	dsn := testDSN(t)
	sep := " "
	if strings.Contains(dsn, "://") {
		sep = "&"
		if !strings.Contains(dsn, "?") {
			sep = "?"
		}
	}
	s, err := Open(context.Background(), dsn+sep+"default_query_exec_mode=simple_protocol", Options{Schema: freshSchema(t, dsn), PageSize: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.EnsureBuckets(tb); err != nil {
		t.Fatal(err)
	}
	keys := [][]byte{{0x00}, {0x00, 0xff}, []byte("a"), []byte("a\\x"), {0x80}, {0xff}}
	if err := s.Update(func(tx storage.Tx) error {
		for i, k := range keys {
			if err := tx.Bucket(tb).Put(k, fmt.Appendf(nil, "\\x%d\x00", i)); err != nil {
				return err
			}
		}
		return tx.Bucket(tb).Put([]byte("empty"), nil)
	}); err != nil {
		t.Fatal(err)
	}
	s.View(func(tx storage.Tx) error {
		i := 0
		c := tx.Bucket(tb).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if string(k) == "empty" {
				if v == nil || len(v) != 0 {
					t.Errorf("empty = %q", v)
				}
				continue
			}
			if !bytes.Equal(k, keys[i]) || string(v) != fmt.Sprintf("\\x%d\x00", i) {
				t.Errorf("key %d: %q=%q", i, k, v)
			}
			i++
		}
		if i != len(keys) {
			t.Errorf("walked %d keys, want %d", i, len(keys))
		}
		return nil
	})
}

// Schema names are quoted, whatever they hold.
func TestOddSchemaName(t *testing.T) {
	dsn := testDSN(t)
	schema := freshSchema(t, dsn) + ` "odd"; name`
	t.Cleanup(func() { pgtest.DropSchemas(context.Background(), dsn, schema) })
	s := openTest(t, Options{Schema: schema})
	if err := s.EnsureBuckets(tb); err != nil {
		t.Fatal(err)
	}
	if err := s.Update(func(tx storage.Tx) error { return tx.Bucket(tb).Put([]byte("k"), []byte("v")) }); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := s.Pool().QueryRow(context.Background(), "SELECT count(*) FROM "+pgx.Identifier{schema, "kv"}.Sanitize()).Scan(&n); err != nil || n != 1 {
		t.Errorf("rows in the odd schema's kv: %d, %v", n, err)
	}
}

// Pages end early past pageBytes: a walk over large values still sees each
// once, in order, both ways.
func TestLargeValuesPaged(t *testing.T) {
	s := openTest(t, Options{})
	if err := s.EnsureBuckets(tb); err != nil {
		t.Fatal(err)
	}
	const n, size = 12, 1 << 20
	val := func(i int) []byte { return bytes.Repeat([]byte{byte('a' + i)}, size) }
	if err := s.Update(func(tx storage.Tx) error {
		for i := range n {
			if err := tx.Bucket(tb).Put([]byte{byte('a' + i)}, val(i)); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	s.View(func(tx storage.Tx) error {
		c := tx.Bucket(tb).Cursor()
		i := 0
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if k[0] != byte('a'+i) || !bytes.Equal(v, val(i)) {
				t.Fatalf("forward step %d at %q", i, k)
			}
			i++
		}
		if i != n {
			t.Errorf("forward walk saw %d of %d", i, n)
		}
		for k, v := c.Last(); k != nil; k, v = c.Prev() {
			i--
			if k[0] != byte('a'+i) || !bytes.Equal(v, val(i)) {
				t.Fatalf("backward step %d at %q", i, k)
			}
		}
		if i != 0 {
			t.Errorf("backward walk stopped at %d", i)
		}
		return nil
	})
}

// Updates waiting for another replica's update hold one connection of
// this replica between them, not one each: Views still get theirs.
func TestWaitingUpdatesLeaveConnectionsForViews(t *testing.T) {
	ss := openReplicas(t, 2, Options{MaxConns: 2, TxTimeout: 10 * time.Second})
	a, b := ss[0], ss[1]
	if err := a.EnsureBuckets(tb); err != nil {
		t.Fatal(err)
	}
	held, release := make(chan struct{}), make(chan struct{})
	go b.Update(func(tx storage.Tx) error {
		close(held)
		<-release
		return nil
	})
	<-held
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			if err := a.Update(func(tx storage.Tx) error { return tx.Bucket(tb).Put([]byte("k"), []byte("v")) }); err != nil {
				t.Error(err)
			}
		})
	}
	time.Sleep(200 * time.Millisecond) // the Updates queue
	start := time.Now()
	if err := a.View(func(tx storage.Tx) error { tx.Bucket(tb).Get([]byte("k")); return nil }); err != nil {
		t.Error(err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("a View behind waiting Updates took %v", d)
	}
	close(release)
	wg.Wait()
}
