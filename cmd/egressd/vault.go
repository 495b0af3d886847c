package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/egressd/egressd/internal/config"
	"github.com/egressd/egressd/internal/datadir"
	"github.com/egressd/egressd/vault"
)

const vaultUsage = `Usage:
  egressd vault rekey --data-dir DIR --new-master-key-file F [--master-key-file OLD]
      one node (bbolt), the server stopped: F is created if absent, and OLD then holds the new key
  egressd vault rekey --store DSN [--store-schema egressd] --master-key-file OLD --new-master-key-file NEW [--ignore-replicas]
      a shared PostgreSQL store, online, the replicas serving: every replica must hold NEW
      already (its --master-key-file holding OLD and NEW, one a line; a serving replica that
      does not is named and nothing changes), and is given NEW alone at its next restart;
      see docs/operating.md, Cluster mode
  egressd vault reindex --data-dir DIR [--master-key-file F]
  egressd vault reindex --store DSN [--store-schema egressd] --master-key-file F
      build the secrets', bindings' and sandboxes' list indexes again from their rows, in one
      transaction (after an older egressd wrote to the vault); on a data dir the server stopped
`

func runVault(args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	if len(args) > 0 && args[0] == "reindex" {
		return runReindex(args[1:], stdout, stderr, getenv)
	}
	return subcommand("vault", vaultUsage, "rekey", runRekey, args, stdout, stderr, getenv)
}

// runReindex builds the lists' indexes again and prints what it indexed.
func runReindex(args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	fs := flag.NewFlagSet("vault reindex", flag.ContinueOnError)
	dataDir := fs.String("data-dir", config.DefaultDataDir, "data directory (the server must be stopped)")
	keyFile := fs.String("master-key-file", "", "master key file (default DATA/master.key; or "+config.MasterKeyEnv+")")
	var sf storeFlags
	sf.add(fs)
	if code, done := parseFlags(fs, args, stderr, getenv); done {
		return code
	}
	var st *vault.Store
	where := ""
	if sf.shared() {
		if err := sf.check(fs, getenv); err != nil {
			fmt.Fprintf(stderr, "egressd vault reindex: %v\n", err)
			return 2
		}
		src, err := sf.keySource(fs, *keyFile, getenv)
		if err != nil {
			return fail(stderr, "vault reindex", err)
		}
		// The replicas made the schema: a missing one (a mistyped
		// --store-schema) is refused, not created.
		backend, err := sf.openExisting()
		if err != nil {
			return fail(stderr, "vault reindex", err)
		}
		o, done, err := datadir.OpenTool(src, backend, sf.name(), true)
		if err != nil {
			return fail(stderr, "vault reindex", err)
		}
		defer done()
		st, where = o.Store, sf.name()
	} else {
		var err error
		if st, err = openDataDirVault(fs, *dataDir, *keyFile, getenv); err != nil {
			return fail(stderr, "vault reindex", err)
		}
		defer st.Close()
		where = datadir.Dir(*dataDir).DB()
	}
	n, err := st.RebuildListIndexes()
	if err != nil {
		return fail(stderr, "vault reindex", err)
	}
	fmt.Fprintf(stderr, "egressd vault reindex: the list indexes of %s hold every secret, binding and sandbox again\n", where)
	if err := json.NewEncoder(stdout).Encode(n); err != nil {
		return fail(stderr, "vault reindex", err)
	}
	return 0
}

func runRekey(args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	fs := flag.NewFlagSet("vault rekey", flag.ContinueOnError)
	dataDir := fs.String("data-dir", config.DefaultDataDir, "data directory")
	newFile := fs.String("new-master-key-file", "", "file of the new master key; created with a fresh key if absent (required; with --store it must exist and hold the new key alone)")
	oldFile := fs.String("master-key-file", "", "current master key file, replaced by the new key on success (default DATA/master.key; or "+config.MasterKeyEnv+"); with --store the old key, or the replicas' two-key file, never replaced")
	timeout := fs.Duration("lock-timeout", time.Second, "how long to wait for the vault file lock")
	ignoreReplicas := fs.Bool("ignore-replicas", false, "with --store: rekey even when a serving replica announced that it does not hold the new key (it then fails closed until given it)")
	var sf storeFlags
	sf.add(fs)
	if code, done := parseFlags(fs, args, stderr, getenv); done {
		return code
	}
	if *newFile == "" {
		fmt.Fprintln(stderr, "egressd vault rekey: --new-master-key-file is required")
		fs.Usage()
		return 2
	}
	if sf.shared() {
		return rekeyStore(fs, &sf, *oldFile, *newFile, *ignoreReplicas, stdout, stderr, getenv)
	}
	dir := datadir.Dir(*dataDir)
	src, err := datadir.NewKeySource(dir, *oldFile, config.IsSet(fs, "master-key-file"), getenv(config.MasterKeyEnv))
	if err != nil {
		return fail(stderr, "vault rekey", err)
	}
	out, err := datadir.Rekey(dir, src, *newFile, *timeout)
	if err != nil {
		return fail(stderr, "vault rekey", err)
	}
	if out.NewKeyCreated {
		fmt.Fprintf(stderr, "egressd vault rekey: created a new master key in %s\n", *newFile)
	}
	if out.ReplacedFile != "" {
		fmt.Fprintf(stderr, "egressd vault rekey: %s now holds the new key (also kept in %s); the old key no longer opens the vault\n", out.ReplacedFile, *newFile)
	} else {
		fmt.Fprintf(stderr, "egressd vault rekey: the old key came from %s: set %s to the contents of %s (or use --master-key-file %s) before starting egressd; the old key no longer opens the vault\n",
			src, config.MasterKeyEnv, *newFile, *newFile)
	}
	if err := json.NewEncoder(stdout).Encode(out.RekeyResult); err != nil {
		return fail(stderr, "vault rekey", err)
	}
	return 0
}

// rekeyStore is vault rekey --store: online, on the shared store.
func rekeyStore(fs *flag.FlagSet, sf *storeFlags, oldFile, newFile string, ignoreReplicas bool, stdout, stderr io.Writer, getenv func(string) string) int {
	if err := sf.check(fs, getenv); err != nil {
		fmt.Fprintf(stderr, "egressd vault rekey: %v\n", err)
		return 2
	}
	src, err := sf.keySource(fs, oldFile, getenv)
	if err != nil {
		return fail(stderr, "vault rekey", err)
	}
	res, err := datadir.RekeyStore(sf.open, sf.name(), src, newFile, ignoreReplicas)
	if err != nil {
		return fail(stderr, "vault rekey", err)
	}
	if res.ReplicasLacking != "" {
		fmt.Fprintf(stderr, "egressd vault rekey: --ignore-replicas: %s; they fail closed until given the new key\n", res.ReplicasLacking)
	}
	fmt.Fprintf(stderr, "egressd vault rekey: %s is sealed by master key %s now (was %s); the replicas seal with it from their next write and were told on the change feed. Give every replica %s alone (drop %s) at its next restart, and check /readyz\n",
		sf.name(), res.NewKeyID, res.OldKeyID, newFile, res.OldKeyID)
	if err := json.NewEncoder(stdout).Encode(res); err != nil {
		return fail(stderr, "vault rekey", err)
	}
	return 0
}
