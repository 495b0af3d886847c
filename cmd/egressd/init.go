package main

import (
	"encoding/json"
	"flag"
	"io"

	"github.com/egressd/egressd/internal/config"
	"github.com/egressd/egressd/internal/datadir"
)

func runInit(args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	fs := flag.NewFlagSet("init", flag.ContinueOnError)
	dataDir := fs.String("data-dir", config.DefaultDataDir, "data directory (master key, CA, vault)")
	tenant := fs.String("tenant", datadir.DefaultTenant, "name of the tenant to create or reuse")
	keyFile := fs.String("master-key-file", "", "master key file, created if absent (default DATA/master.key; "+config.MasterKeyEnv+" holds the key itself instead)")
	if code, done := parseFlags(fs, args, stderr, getenv); done {
		return code
	}
	dir := datadir.Dir(*dataDir)
	src, err := datadir.NewKeySource(dir, *keyFile, config.IsSet(fs, "master-key-file"), getenv(config.MasterKeyEnv))
	if err != nil {
		return fail(stderr, "init", err)
	}
	res, err := datadir.Init(dir, src, *tenant)
	if err != nil {
		return fail(stderr, "init", err)
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(res); err != nil {
		return fail(stderr, "init", err)
	}
	return 0
}
