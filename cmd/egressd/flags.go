package main

import (
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/egressd/egressd/internal/config"
)

// parseFlags parses args into fs, then fills what was not given from the
// EGRESSD_* environment. done is true when the caller should return code
// (help shown, or a usage error).
func parseFlags(fs *flag.FlagSet, args []string, stderr io.Writer, getenv func(string) string) (code int, done bool) {
	fs.SetOutput(stderr)
	config.AnnotateEnv(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, true
		}
		return 2, true
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "egressd %s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		fs.Usage()
		return 2, true
	}
	if err := config.ApplyEnv(fs, getenv); err != nil {
		fmt.Fprintf(stderr, "egressd %s: %v\n", fs.Name(), err)
		return 2, true
	}
	return 0, false
}
