package vault

import (
	"errors"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/egressd/egressd/vault/storage"
)

// fakeFeed is a backend with a change feed, as vault/pgstore has: Publish
// writes the topic into a bucket of the transaction (so a rolled back
// write publishes nothing), deliver plays another replica's change.
type fakeFeed struct {
	storage.Backend
	healthy atomic.Bool
	fail    atomic.Bool // Publish fails
	seq     atomic.Int64

	mu   sync.Mutex
	subs []func(string)
}

var bFakeChanges = []byte("fake_changes")

func newFakeFeed(tb testing.TB, cfg Config) *fakeFeed {
	f := &fakeFeed{Backend: openBoltTestBackend(tb, cfg)}
	f.healthy.Store(true)
	if err := f.EnsureBuckets(bFakeChanges); err != nil {
		tb.Fatal(err)
	}
	return f
}

var errPublish = errors.New("publish failed")

func (f *fakeFeed) Publish(tx storage.Tx, topic string) error {
	if f.fail.Load() {
		return errPublish
	}
	if !tx.Writable() {
		return storage.ErrTxNotWritable
	}
	return tx.Bucket(bFakeChanges).Put([]byte(strconv.FormatInt(f.seq.Add(1)+1e9, 10)), []byte(topic))
}

func (f *fakeFeed) Subscribe(fn func(string)) {
	f.mu.Lock()
	f.subs = append(f.subs, fn)
	f.mu.Unlock()
}

func (f *fakeFeed) Healthy() bool { return f.healthy.Load() }

func (f *fakeFeed) deliver(topic string) {
	f.mu.Lock()
	subs := f.subs
	f.mu.Unlock()
	for _, fn := range subs {
		fn(topic)
	}
}

// published takes the topics committed so far.
func (f *fakeFeed) published(tb testing.TB) []string {
	var out []string
	err := f.Update(func(tx storage.Tx) error {
		b := tx.Bucket(bFakeChanges)
		var keys [][]byte
		b.ForEach(func(k, v []byte) error {
			out = append(out, string(v))
			keys = append(keys, slices.Clone(k))
			return nil
		})
		for _, k := range keys {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

func openFeedTest(t *testing.T) (*Store, *fakeFeed) {
	var f *fakeFeed
	s := openTest(t, func(c *Config) {
		f = newFakeFeed(t, *c)
		c.Backend = f
	})
	if len(f.subs) != 1 {
		t.Fatalf("Open subscribed %d times, want once", len(f.subs))
	}
	return s, f
}

// Every write of a tenant publishes the tenant inside its transaction; a
// write that fails publishes nothing, and one whose Publish fails is not
// stored and tells no listener.
func TestWritesPublishTheirTenant(t *testing.T) {
	s, f := openFeedTest(t)
	rec := &recorder{}
	s.OnChange(rec.fn)

	tn := mustTenant(t, s, "acme")
	if got := f.published(t); !slices.Equal(got, []string{tn.ID}) {
		t.Fatalf("creating a tenant published %q, want [%s]", got, tn.ID)
	}
	if _, _, err := s.EnsureTenant("acme"); err != nil {
		t.Fatal(err)
	}
	if got := f.published(t); len(got) != 0 {
		t.Fatalf("finding a tenant published %q", got)
	}
	_, admin, err := s.CreateTenant("second")
	if err != nil || admin == "" {
		t.Fatal(err)
	}
	if got := f.published(t); len(got) != 1 {
		t.Fatalf("CreateTenant published %q", got)
	}
	sbx, _ := mustSandbox(t, s, tn.ID, SandboxInput{})
	sec := mustUpsert(t, s, tn.ID, SecretInput{Name: "k", Value: "v1", Scope: ScopeTenant, AllowedHosts: []string{"api.example.com"}}).Secret
	if _, err := s.RotateSecret(tn.ID, sec.ID, RotateInput{Value: "v2"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetDisabled(tn.ID, sec.ID, true); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateSettings(tn.ID, SettingsPatch{AllowEndUserCredentials: new(false)}); err != nil {
		t.Fatal(err)
	}
	// The operator's source_prefixes reach the other replicas' caches
	// of the settings (the transparent listener reads them there).
	if _, err := s.SetSourcePrefixes(tn.ID, []string{"10.8.0.0/16"}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.ReissueSandboxToken(tn.ID, sbx.ID, 0); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteSandbox(tn.ID, sbx.ID); err != nil {
		t.Fatal(err)
	}
	want := slices.Repeat([]string{tn.ID}, 8)
	if got := f.published(t); !slices.Equal(got, want) {
		t.Fatalf("published %q, want %q", got, want)
	}
	rec.take()

	// Refused: nothing published, nothing told.
	if _, err := s.RotateSecret(tn.ID, "sec_missing", RotateInput{Value: "v3"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("rotate of a missing secret: %v", err)
	}
	if got := f.published(t); len(got) != 0 {
		t.Fatalf("a refused write published %q", got)
	}
	// Publish fails: the write fails whole.
	f.fail.Store(true)
	if _, err := s.RotateSecret(tn.ID, sec.ID, RotateInput{Value: "v3"}); !errors.Is(err, errPublish) {
		t.Fatalf("rotate whose publish failed: %v", err)
	}
	f.fail.Store(false)
	if v := mustOpenValue(t, s, tn.ID, sec.ID); v != "v2" {
		t.Fatalf("a write whose publish failed stored %q", v)
	}
	if got := rec.take(); len(got) != 0 {
		t.Fatalf("a failed write told listeners %q", got)
	}
}

// What the feed delivers reaches the listeners as the tenant it names (or
// AllTenants) and publishes nothing again.
func TestDeliveredChangesReachListeners(t *testing.T) {
	s, f := openFeedTest(t)
	rec := &recorder{}
	s.OnChange(rec.fn)
	f.deliver("tn_other_replica")
	f.deliver(storage.TopicAll)
	if got := rec.take(); !slices.Equal(got, []string{"tn_other_replica", AllTenants}) {
		t.Fatalf("listeners got %q", got)
	}
	if got := f.published(t); len(got) != 0 {
		t.Fatalf("a delivery published %q", got)
	}
}

// ChangesHealthy is the feed's Healthy, and true without a feed.
func TestChangesHealthy(t *testing.T) {
	s, f := openFeedTest(t)
	if !s.ChangesHealthy() {
		t.Fatal("unhealthy with a healthy feed")
	}
	f.healthy.Store(false)
	if s.ChangesHealthy() {
		t.Fatal("healthy with an unhealthy feed")
	}
	if plain := openTest(t); plain.feed == nil && !plain.ChangesHealthy() {
		t.Fatal("a store without a change feed is not healthy")
	}
}
