package datadir

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Dir.Check and KeySource.Check create nothing, and refuse what Open would
// fail on only after creating the directory.
func TestChecksCreateNothing(t *testing.T) {
	root := t.TempDir()
	file := filepath.Join(root, "file")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	garbage := filepath.Join(root, "garbage.key")
	if err := os.WriteFile(garbage, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		check func() error
		want  string // "" means no error
	}{
		{"new dir under an existing one", Dir(filepath.Join(root, "a", "b")).Check, ""},
		{"existing dir", Dir(root).Check, ""},
		{"dir is a file", Dir(file).Check, "--data-dir " + file + ": not a directory"},
		{"dir under a file", Dir(filepath.Join(file, "data")).Check, "--data-dir " + filepath.Join(file, "data") + ": cannot be created: " + file + ": not a directory"},
		{"key file absent, no vault", func() error {
			return fileSource(t, Dir(filepath.Join(root, "new"))).Check(Dir(filepath.Join(root, "new")))
		}, ""},
		{"key file is a directory", func() error { return KeySource{File: root}.Check(Dir(filepath.Join(root, "d2"))) }, "--master-key-file " + root + ": is a directory"},
		{"key file garbage", func() error { return KeySource{File: garbage}.Check(Dir(filepath.Join(root, "d3"))) }, "--master-key-file " + garbage + ": not a master key"},
		{"key file under a file", func() error { return KeySource{File: filepath.Join(file, "k")}.Check(Dir(filepath.Join(root, "d4"))) }, "--master-key-file " + filepath.Join(file, "k") + ": "},
		{"key in env garbage", func() error { return KeySource{text: "short"}.Check(Dir(root)) }, "EGRESSD_MASTER_KEY"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := c.check()
			if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.HasPrefix(err.Error(), c.want) && !strings.Contains(err.Error(), c.want)) {
				t.Fatalf("err = %v, want %q", err, c.want)
			}
			if err != nil && strings.Contains(err.Error(), "not a key") {
				t.Fatal("the key file's content is in the message")
			}
		})
	}
	ents, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 2 {
		t.Fatalf("the checks created files: %v", ents)
	}
}

// An existing vault whose key file is gone is refused, not given a new key.
func TestKeyCheckExistingVault(t *testing.T) {
	dir := Dir(filepath.Join(t.TempDir(), "data"))
	src := fileSource(t, dir)
	if _, err := Init(dir, src, "acme"); err != nil {
		t.Fatal(err)
	}
	if err := src.Check(dir); err != nil {
		t.Fatalf("key of an initialised dir: %v", err)
	}
	if err := os.Remove(dir.MasterKey()); err != nil {
		t.Fatal(err)
	}
	if err := src.Check(dir); !errors.Is(err, ErrNoMasterKey) {
		t.Fatalf("err = %v, want ErrNoMasterKey", err)
	}
	if _, err := os.Stat(dir.MasterKey()); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("Check created a master key")
	}
}

// Without write permission the directory is refused (root may write
// anywhere, so this runs only as another user).
func TestDirCheckNotWritable(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root may write in any directory")
	}
	ro := filepath.Join(t.TempDir(), "ro")
	if err := os.Mkdir(ro, 0o500); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(ro, 0o700) })
	if err := Dir(ro).Check(); err == nil || !strings.Contains(err.Error(), "not writable (permission denied)") {
		t.Fatalf("read-only dir: %v", err)
	}
	if err := Dir(filepath.Join(ro, "data")).Check(); err == nil || !strings.Contains(err.Error(), "cannot be created: "+ro+": not writable") {
		t.Fatalf("under a read-only dir: %v", err)
	}
}
