package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/egressd/egressd/audit"
	"github.com/egressd/egressd/internal/config"
	"github.com/egressd/egressd/vault"
)

const auditUsage = `Usage:
  egressd audit export --data-dir DIR [--since 30d] [--tenant-id T]   (server stopped)
  egressd audit export --store DSN [--store-schema S] [--since 30d] [--tenant-id T]   (replicas may run)
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
	if err := sf.store.Check(); err != nil {
		fmt.Fprintf(stderr, "egressd audit export: %v\n", err)
		return 2
	}
	w := bufio.NewWriter(stdout)
	enc := json.NewEncoder(w)
	n := 0
	write := func(r audit.Row) error {
		n++
		return enc.Encode(r)
	}
	done := func(err error) int {
		if ferr := w.Flush(); err == nil {
			err = ferr
		}
		if err != nil {
			return fail(stderr, "audit export", err)
		}
		fmt.Fprintf(stderr, "egressd audit export: %d rows\n", n)
		return 0
	}
	if sf.shared() {
		// The rows are not sealed: no master key is read (one given is
		// ignored), and nothing is written: a schema that is missing or at
		// another version is refused, not created or migrated.
		ps, err := sf.openExisting()
		if err != nil {
			return fail(stderr, "audit export", err)
		}
		defer ps.Close()
		return done(vault.ExportStoredAudit(ps, *tenant, from, write))
	}
	st, err := openDataDirVault(fs, *dataDir, *keyFile, getenv)
	if err != nil {
		return fail(stderr, "audit export", err)
	}
	defer st.Close()
	return done(st.ExportAudit(*tenant, from, write))
}
