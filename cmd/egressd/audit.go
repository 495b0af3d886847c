package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/egressd/egressd/internal/config"
	"github.com/egressd/egressd/internal/datadir"
	"github.com/egressd/egressd/vault"
)

const auditUsage = `Usage:
  egressd audit export --data-dir DIR [--since 30d] [--tenant-id T]   (server stopped)
  egressd audit export --store DSN [--store-schema egressd] --master-key-file F [--since 30d] [--tenant-id T]
      a shared PostgreSQL store, the replicas serving (rows still in a replica's journal come once it ships them)
`

func runAudit(args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	return subcommand("audit", auditUsage, "export", runAuditExport, args, stdout, stderr, getenv)
}

// runAuditExport writes audit rows as JSON lines, oldest first.
func runAuditExport(args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	fs := flag.NewFlagSet("audit export", flag.ContinueOnError)
	dataDir := fs.String("data-dir", config.DefaultDataDir, "data directory (the server must be stopped)")
	keyFile := fs.String("master-key-file", "", "master key file (default DATA/master.key; or "+config.MasterKeyEnv+")")
	since := fs.String("since", "30d", "rows from this long ago (7d, 90m, 12h) or this RFC 3339 time on")
	tenant := fs.String("tenant-id", "", "only this tenant's rows (default: every tenant)")
	var sf storeFlags
	sf.add(fs)
	if code, done := parseFlags(fs, args, stderr, getenv); done {
		return code
	}
	from, err := config.ParseSince(*since, time.Now())
	if err != nil {
		fmt.Fprintf(stderr, "egressd audit export: --since %q: %v\n", *since, err)
		return 2
	}
	var st *vault.Store
	if sf.shared() {
		if err := sf.check(fs, getenv); err != nil {
			fmt.Fprintf(stderr, "egressd audit export: %v\n", err)
			return 2
		}
		src, err := sf.keySource(fs, *keyFile, getenv)
		if err == nil {
			err = src.CheckShared() // before the store is reached
		}
		if err != nil {
			return fail(stderr, "audit export", err)
		}
		backend, err := sf.open()
		if err != nil {
			return fail(stderr, "audit export", err)
		}
		o, done, err := datadir.OpenTool(src, backend, sf.name(), true)
		if err != nil {
			return fail(stderr, "audit export", err)
		}
		defer done()
		st = o.Store
	} else {
		dir := datadir.Dir(*dataDir)
		if ok, err := dir.HasVault(); err != nil || !ok {
			return fail(stderr, "audit export", fmt.Errorf("no vault in %s", dir))
		}
		src, err := datadir.NewKeySource(dir, *keyFile, config.IsSet(fs, "master-key-file"), getenv(config.MasterKeyEnv))
		if err != nil {
			return fail(stderr, "audit export", err)
		}
		key, _, err := src.Load(false)
		if err != nil {
			return fail(stderr, "audit export", err)
		}
		if st, err = datadir.OpenVault(dir, key, src); err != nil {
			return fail(stderr, "audit export", err)
		}
		defer st.Close()
	}
	w := bufio.NewWriter(stdout)
	enc := json.NewEncoder(w)
	n := 0
	err = st.ExportAudit(*tenant, from, func(r vault.AuditRow) error {
		n++
		return enc.Encode(r)
	})
	if ferr := w.Flush(); err == nil {
		err = ferr
	}
	if err != nil {
		return fail(stderr, "audit export", err)
	}
	fmt.Fprintf(stderr, "egressd audit export: %d rows\n", n)
	return 0
}
