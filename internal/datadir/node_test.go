package datadir

import (
	"os"
	"strings"
	"sync"
	"testing"
)

// A data dir's node id is made once, kept across opens, and the same for
// processes that ask at once; one that is not a node id is refused.
func TestNodeID(t *testing.T) {
	dir := Dir(t.TempDir())
	ids := make([]string, 8)
	var wg sync.WaitGroup
	for i := range ids {
		wg.Go(func() {
			id, err := dir.NodeID()
			if err != nil {
				t.Error(err)
			}
			ids[i] = id
		})
	}
	wg.Wait()
	for _, id := range ids {
		if id != ids[0] || len(id) != 32 {
			t.Fatalf("node ids %q", ids)
		}
	}
	fi, err := os.Stat(dir.Path(NodeIDFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("node.id: %v %v", fi, err)
	}
	src, err := NewKeySource(dir, "", false, "")
	if err != nil {
		t.Fatal(err)
	}
	o, err := Open(dir, src)
	if err != nil {
		t.Fatal(err)
	}
	o.Store.Close()
	if o.NodeID != ids[0] || o.Where != dir.DB() || o.Shared {
		t.Fatalf("opened as node %q at %q (shared %v)", o.NodeID, o.Where, o.Shared)
	}
	if err := os.WriteFile(dir.Path(NodeIDFile), []byte("not/an id\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := dir.NodeID(); err == nil || !strings.Contains(err.Error(), "not a node id") {
		t.Fatalf("a bad node.id: %v", err)
	}
}
