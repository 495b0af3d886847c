// Command egressd is the credential-injecting egress proxy for sandboxes:
// init sets up a data dir, serve runs the admin API (and, in later builds,
// the proxy), vault rekey moves the vault to a new master key. This file
// holds only the verb dispatch; each verb's flags and wiring are in their
// own file, the logic under internal/.
package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
)

// version is set at link time: -ldflags "-X main.version=v1.2.3".
var version = "dev"

const usageText = `egressd keeps credentials out of sandboxes: a credential-injecting egress proxy.

Usage:
  egressd <command> [flags]

Commands:
  init          create the data dir (master key, CA, vault), a tenant and an admin key
                (--store DSN: the vault and CA in a PostgreSQL store, before the replicas start)
  serve         run the proxy, the admin API and metrics (creates a "default" tenant on first run)
  vault rekey   re-wrap every secret under a new master key (server stopped; --store DSN: online)
  vault reindex build the lists' indexes again after an older egressd wrote (server stopped; --store DSN: online)
  store migrate apply a PostgreSQL store's schema migrations (--store DSN)
  store copy    copy a single node's vault and CA into an empty PostgreSQL store (server stopped)
  audit export  write audit rows as JSON lines (server stopped; --store DSN: online)
  replay DIR    replay golden cases against a running egressd (through its API and proxy)
  healthcheck   exit 0 if a running egressd answers /healthz (for container health checks)
  echo          a tiny HTTPS upstream that answers with what it received (to try egressd offline)
  version       print the version
  help          print this help

Run "egressd <command> -h" for the flags of a command. Every flag can also be
set by an environment variable: --admin-listen is EGRESSD_ADMIN_LISTEN.
The master key itself may be given as EGRESSD_MASTER_KEY instead of a file.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr, os.Getenv))
}

// run executes one command and returns the exit code: 0 on success, 1 on
// failure, 2 on a usage error.
func run(args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usageText)
		return 2
	}
	switch verb, rest := args[0], args[1:]; verb {
	case "init":
		return runInit(rest, stdout, stderr, getenv)
	case "serve":
		return runServe(rest, stdout, stderr, getenv)
	case "vault":
		return runVault(rest, stdout, stderr, getenv)
	case "audit":
		return runAudit(rest, stdout, stderr, getenv)
	case "store":
		return runStore(rest, stdout, stderr, getenv)
	case "replay":
		return runReplay(rest, stdout, stderr, getenv)
	case "healthcheck":
		return runHealthcheck(rest, stdout, stderr, getenv)
	case "echo":
		return runEcho(rest, stdout, stderr, getenv)
	case "version", "-version", "--version":
		fmt.Fprintln(stdout, versionString())
		return 0
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usageText)
		return 0
	default:
		fmt.Fprintf(stderr, "egressd: unknown command %q\n\n%s", verb, usageText)
		return 2
	}
}

func versionString() string {
	v := version
	if bi, ok := debug.ReadBuildInfo(); ok && v == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		v = bi.Main.Version
	}
	return fmt.Sprintf("egressd %s (%s %s/%s)", v, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// fail prints err for the verb and returns exit code 1.
func fail(stderr io.Writer, verb string, err error) int {
	fmt.Fprintf(stderr, "egressd %s: %v\n", verb, err)
	return 1
}

// verb is one command's entry point.
type verb func(args []string, stdout, stderr io.Writer, getenv func(string) string) int

// subcommand runs the one subcommand of a command group ("vault rekey",
// "audit export"): no argument is a usage error, help prints the usage.
func subcommand(group, usage, name string, run verb, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(stderr, usage)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	if args[0] != name {
		fmt.Fprintf(stderr, "egressd %s: unknown command %q\n\n%s", group, args[0], usage)
		return 2
	}
	return run(args[1:], stdout, stderr, getenv)
}
