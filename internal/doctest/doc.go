// Package doctest holds only tests: they run the shell blocks of README.md
// and docs/*.md, so that every command a reader is shown is known to work.
//
// Every ```sh block carries an HTML comment on the line before it that
// says how it runs ("<!-- run: quickstart -->", "<!-- run: with-quickstart
// -->", "<!-- not run: needs docker -->", ...; docs/ci.md has the table).
// TestBlocksMarked fails on a shell block without one, on a fence without
// a language and on a broken link between the pages. TestQuickstart runs
// the README's Quickstart verbatim with bash, in a directory that links the
// repository's sources, and checks that its request reached the upstream
// with the real value while the sandbox saw only the placeholder.
// TestPages runs each page's examples in the shell of a Quickstart,
// TestStandalone the blocks that need nothing running, and TestTwoCommands
// the README's run command.
//
// Without bash or curl the tests that need them are skipped with the
// command they would have run.
package doctest
