package datadir

import (
	"encoding/base64"
	"errors"
	"sync"
	"testing"

	"github.com/egressd/egressd/vault"
)

// Regression: first runs that start together each found no tenant and
// each made and printed an admin key. Bootstrap looks and creates under
// the vault's lock, so exactly one of them does.
func TestBootstrapOnceWhenConcurrent(t *testing.T) {
	dir := Dir(t.TempDir())
	o, err := Open(dir, fileSource(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	defer o.Store.Close()
	const n = 8
	var wg sync.WaitGroup
	start := make(chan struct{})
	oks := make(chan bool, n)
	for range n {
		wg.Go(func() {
			<-start
			_, ok, err := Bootstrap(o.Store)
			if err != nil {
				t.Error(err)
			}
			oks <- ok
		})
	}
	close(start)
	wg.Wait()
	close(oks)
	made := 0
	for ok := range oks {
		if ok {
			made++
		}
	}
	if made != 1 {
		t.Fatalf("%d of %d concurrent first runs made the keys, want 1", made, n)
	}
	ts, err := o.Store.Tenants()
	if err != nil || len(ts) != 1 {
		t.Fatalf("tenants %v %v", ts, err)
	}
}

// A shared store's key source may hold two keys (the replicas' ring
// around a rekey); a data dir's may not, and says why.
func TestKeyRingSource(t *testing.T) {
	a, b := vault.NewMasterKey(), vault.NewMasterKey()
	text := func(ks ...*vault.MasterKey) string {
		s := ""
		for _, k := range ks {
			s += keyText(t, k) + "\n"
		}
		return s
	}
	dir := Dir(t.TempDir())
	src, err := NewKeySource(dir, "", false, text(a, b))
	if err != nil {
		t.Fatal(err)
	}
	ks, err := src.LoadRing()
	if err != nil || len(ks) != 2 || !ks[0].Equal(a) || !ks[1].Equal(b) {
		t.Fatalf("ring: %v %v", ks, err)
	}
	if err := src.CheckShared(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := src.Load(false); !errors.Is(err, vault.ErrBadMasterKey) {
		t.Fatalf("two keys for a data dir: %v", err)
	}
	for name, bad := range map[string]string{"three": text(a, b, vault.NewMasterKey()), "twice": text(a, a), "empty": " \n"} {
		src, _ := NewKeySource(dir, "", false, bad)
		if _, err := src.LoadRing(); !errors.Is(err, vault.ErrBadMasterKey) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// keyText is a key's text form, as a key file holds it.
func keyText(t *testing.T, k *vault.MasterKey) string {
	t.Helper()
	path := t.TempDir() + "/k"
	if err := vault.WriteMasterKeyFile(path, k); err != nil {
		t.Fatal(err)
	}
	b := read(t, path)
	if _, err := base64.StdEncoding.DecodeString(string(b[:len(b)-1])); err != nil {
		t.Fatal(err)
	}
	return string(b[:len(b)-1])
}
