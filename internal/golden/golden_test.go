package golden

import (
	"flag"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the expectation sections of testdata/golden from what happened")

// TestGolden replays every case of testdata/golden through the real proxy.
func TestGolden(t *testing.T) {
	dir := filepath.Join("..", "..", "testdata", "golden")
	cases, err := LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(cases) == 0 {
		t.Fatalf("no cases in %s", dir)
	}
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			t.Parallel()
			res, err := Run(c, t.TempDir(), *update)
			if err != nil {
				t.Fatal(err)
			}
			if *update {
				if err := os.WriteFile(c.Path, Update(c, res), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			diffs, err := Diff(c, res)
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range diffs {
				t.Error(d)
			}
			if len(diffs) > 0 {
				t.Logf("run with -update to take what happened as the expectation (then review the diff): %s", c.Path)
			}
		})
	}
}
