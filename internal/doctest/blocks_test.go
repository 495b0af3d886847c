package doctest

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// How a shell block runs: the value of its "<!-- run: MODE -->" comment.
const (
	// modeQuickstart: a block of the README's Quickstart, run in order
	// with the others in one shell.
	modeQuickstart = "quickstart"
	// modeQuickstartStop: the Quickstart's last block, which stops its
	// servers.
	modeQuickstartStop = "quickstart-stop"
	// modeWithQuickstart: a page's example, run after the Quickstart's
	// blocks and before its stop block, in the same shell.
	modeWithQuickstart = "with-quickstart"
	// modeAfterStop: a page's example that needs the servers stopped, run
	// after the Quickstart's stop block.
	modeAfterStop = "after-quickstart-stop"
	// modeStandalone: run alone in a fresh workspace.
	modeStandalone = "standalone"
	// modeTwoCommands: the README's run and test commands (TestTwoCommands).
	modeTwoCommands = "two-commands"
)

var modes = map[string]bool{
	modeQuickstart: true, modeQuickstartStop: true, modeWithQuickstart: true,
	modeAfterStop: true, modeStandalone: true, modeTwoCommands: true,
}

// readmeOnly are the modes only README.md may use.
var readmeOnly = map[string]bool{modeQuickstart: true, modeQuickstartStop: true, modeTwoCommands: true}

// notRunReasons are the reasons a shell block may give for not being run.
// A new reason is a change to review: could the block run after all?
var notRunReasons = map[string]bool{
	"needs docker":                     true, // no Docker in the test
	"needs PostgreSQL":                 true, // no server here; cmd/egressd's TestStore* and TestServeStore* run these verbs in .ci/run step 2b
	"needs kubernetes":                 true,
	"needs the internet":               true,
	"needs root and installs packages": true,
	"needs root and nftables":          true, // transparent mode; proxy's TestTransparentNetns runs it in namespaces of its own
	"takes minutes":                    true, // the load benchmark, .ci/run
	"a CI step":                        true, // each line is a line of .ci/run (checked)
	"rewrites the golden files":        true,
	"runs this test":                   true,
}

// shellLangs are the fence languages of commands to run.
var shellLangs = map[string]bool{"sh": true, "bash": true, "shell": true, "zsh": true}

// block is one fenced code block of a page.
type block struct {
	file string // relative to the repository root
	line int    // of the opening fence, 1-based
	lang string
	// mark is the comment on the line before the fence: "run" or "not
	// run", with its value; both empty without one.
	mark, value string
	body        string
	end         int // line of the closing fence, 1-based
}

func (b *block) where() string { return fmt.Sprintf("%s:%d", b.file, b.line) }

var (
	fenceRE = regexp.MustCompile("^(\\s*)(```+|~~~+)\\s*([^\\s`]*)")
	markRE  = regexp.MustCompile(`^\s*<!--\s*(run|not run):\s*(.*?)\s*-->\s*$`)
)

// parseBlocks returns the fenced blocks of a markdown text. A fence may be
// indented (inside a list item); its content loses that indentation.
func parseBlocks(file, text string) ([]block, error) {
	lines := strings.Split(text, "\n")
	var out []block
	for i := 0; i < len(lines); i++ {
		m := fenceRE.FindStringSubmatch(lines[i])
		if m == nil {
			continue
		}
		indent, fence, lang := m[1], m[2], m[3]
		b := block{file: file, line: i + 1, lang: lang}
		for j := i - 1; j >= 0; j-- {
			if strings.TrimSpace(lines[j]) == "" {
				continue
			}
			if mm := markRE.FindStringSubmatch(lines[j]); mm != nil {
				b.mark, b.value = mm[1], mm[2]
			}
			break
		}
		var body []string
		closed := false
		for i++; i < len(lines); i++ {
			l := lines[i]
			if t := strings.TrimSpace(l); strings.HasPrefix(t, fence[:1]) && strings.Trim(t, fence[:1]) == "" && len(t) >= len(fence) {
				closed = true
				break
			}
			body = append(body, strings.TrimPrefix(l, indent))
		}
		if !closed {
			return nil, fmt.Errorf("%s: the fence opened there is never closed", b.where())
		}
		b.body = strings.Join(body, "\n") + "\n"
		b.end = i + 1
		out = append(out, b)
	}
	return out, nil
}

// repoRoot is the repository root: two levels above this package.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("no go.mod at %s: %v", root, err)
	}
	return root
}

// pages are README.md and docs/*.md, relative to the repository root.
func pages(t *testing.T) []string {
	t.Helper()
	docs, err := filepath.Glob(filepath.Join(repoRoot(t), "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	out := []string{"README.md"}
	for _, d := range docs {
		out = append(out, filepath.Join("docs", filepath.Base(d)))
	}
	sort.Strings(out[1:])
	return out
}

// allBlocks parses every page.
func allBlocks(t *testing.T) []block {
	t.Helper()
	var out []block
	for _, p := range pages(t) {
		text, err := os.ReadFile(filepath.Join(repoRoot(t), p))
		if err != nil {
			t.Fatal(err)
		}
		bs, err := parseBlocks(p, string(text))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, bs...)
	}
	return out
}

// blocksIn returns the shell blocks of file marked "run: mode", in order.
func blocksIn(bs []block, file, mode string) []block {
	var out []block
	for _, b := range bs {
		if b.file == file && b.mark == "run" && b.value == mode {
			out = append(out, b)
		}
	}
	return out
}

// TestBlocksMarked: every fence names its language; every shell block
// says how it runs (or why not), with a known mode or reason; a run
// comment stands only before a shell block; the Quickstart's blocks are
// in the README's Quickstart section. A shell block that no test runs and
// that says nothing fails here.
func TestBlocksMarked(t *testing.T) {
	t.Parallel()
	bs := allBlocks(t)
	ciRun, err := os.ReadFile(filepath.Join(repoRoot(t), ".ci", "run"))
	if err != nil {
		t.Fatal(err)
	}
	ciLines := map[string]bool{}
	for _, l := range strings.Split(string(ciRun), "\n") {
		ciLines[strings.Join(strings.Fields(l), " ")] = true
	}
	shell := 0
	for _, b := range bs {
		if b.lang == "" {
			t.Errorf("%s: a fence without a language: use sh for commands, text for output", b.where())
			continue
		}
		if !shellLangs[b.lang] {
			if b.mark != "" {
				t.Errorf("%s: <!-- %s: %s --> before a %s block: only shell blocks are run", b.where(), b.mark, b.value, b.lang)
			}
			continue
		}
		shell++
		switch b.mark {
		case "":
			t.Errorf("%s: a shell block without <!-- run: MODE --> or <!-- not run: REASON --> before it (docs/ci.md says which)", b.where())
		case "run":
			if !modes[b.value] {
				t.Errorf("%s: unknown run mode %q", b.where(), b.value)
			} else if readmeOnly[b.value] && b.file != "README.md" {
				t.Errorf("%s: run mode %q is for README.md only", b.where(), b.value)
			}
		case "not run":
			if !notRunReasons[b.value] {
				t.Errorf("%s: not run for an unknown reason %q: is it one of these, or can it run after all? %v", b.where(), b.value, sortedKeys(notRunReasons))
			}
			if b.value == "a CI step" {
				for _, l := range strings.Split(strings.TrimSpace(b.body), "\n") {
					if !ciLines[strings.Join(strings.Fields(l), " ")] {
						t.Errorf("%s: marked a CI step, but .ci/run has no line %q", b.where(), l)
					}
				}
			}
		}
	}
	if shell == 0 {
		t.Fatal("no shell blocks found: is the parser broken?")
	}
	readme, err := os.ReadFile(filepath.Join(repoRoot(t), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	qs := quickstartSection(string(readme))
	for _, mode := range []string{modeQuickstart, modeQuickstartStop} {
		got := blocksIn(bs, "README.md", mode)
		if len(got) == 0 {
			t.Errorf("README.md has no block marked run: %s", mode)
		}
		for _, b := range got {
			if !strings.Contains(qs, b.body) {
				t.Errorf("%s: a %s block outside the README's Quickstart section", b.where(), mode)
			}
		}
	}
	if got := blocksIn(bs, "README.md", modeTwoCommands); len(got) != 1 {
		t.Errorf("README.md has %d blocks marked run: %s, want 1", len(got), modeTwoCommands)
	}
}

// quickstartSection is the README's "## Quickstart" section.
func quickstartSection(readme string) string {
	_, rest, ok := strings.Cut(readme, "\n## Quickstart\n")
	if !ok {
		return ""
	}
	if i := strings.Index(rest, "\n## "); i >= 0 {
		rest = rest[:i]
	}
	return rest
}

func sortedKeys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

var (
	linkRE    = regexp.MustCompile(`\]\(([^)\s]+)\)`)
	headingRE = regexp.MustCompile(`(?m)^#{1,6} +(.+?) *$`)
)

// prose is a page without its fenced blocks (their lines left empty), so
// that a "# comment" in a block is not taken for a heading.
func prose(t *testing.T, file, text string) string {
	t.Helper()
	bs, err := parseBlocks(file, text)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(text, "\n")
	for _, b := range bs {
		for i := b.line - 1; i < b.end && i < len(lines); i++ {
			lines[i] = ""
		}
	}
	return strings.Join(lines, "\n")
}

// slug is GitHub's anchor for a heading: lower case, punctuation other
// than hyphens and underscores dropped, spaces to hyphens.
func slug(h string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(h) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r > 127:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// TestLinks: README links every docs page; every relative link of a page
// names a file that exists, and an anchor names a heading of that page.
func TestLinks(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	anchors := map[string]map[string]bool{}
	texts := map[string]string{}
	for _, p := range pages(t) {
		b, err := os.ReadFile(filepath.Join(root, p))
		if err != nil {
			t.Fatal(err)
		}
		texts[p] = prose(t, p, string(b))
		anchors[p] = map[string]bool{}
		for _, m := range headingRE.FindAllStringSubmatch(texts[p], -1) {
			anchors[p][slug(m[1])] = true
		}
	}
	for _, p := range pages(t) {
		if strings.HasPrefix(p, "docs/") && !strings.Contains(texts["README.md"], "]("+p+")") {
			t.Errorf("README.md does not link %s", p)
		}
		for _, m := range linkRE.FindAllStringSubmatch(texts[p], -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			file, anchor, _ := strings.Cut(target, "#")
			dest := p
			if file != "" {
				dest = filepath.ToSlash(filepath.Clean(filepath.Join(filepath.Dir(p), file)))
				if _, err := os.Stat(filepath.Join(root, dest)); err != nil {
					t.Errorf("%s: link %s: %v", p, target, err)
					continue
				}
			}
			if anchor != "" {
				a, ok := anchors[dest]
				if !ok {
					t.Errorf("%s: link %s: an anchor into a file that is not a checked page", p, target)
				} else if !a[anchor] {
					t.Errorf("%s: link %s: %s has no heading with that anchor", p, target, dest)
				}
			}
		}
	}
}
