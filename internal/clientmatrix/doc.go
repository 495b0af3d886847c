// Package clientmatrix holds only a test: the client matrix of issue 12,
// "every sandbox client works on first contact".
//
// TestClientMatrix builds egressd, runs a real `egressd serve`, registers a
// secret and a sandbox through the admin API, and then runs real clients as
// subprocesses with nothing but the sandbox's env (plus PATH and HOME):
// curl (default and --proxy-anyauth), git over smart HTTP (ls-remote and
// clone, the placeholder as the Basic password), Python requests and
// urllib.request, Node's global fetch and Go's net/http. Each sends the
// placeholder to a loopback HTTPS upstream reached by name through the proxy;
// the upstream checks that the real value arrived, and the test checks that
// no client printed it.
//
// As root it installs the clients it lacks (apt-get, and `npm ci` for the
// undici that Node 20 needs); without root a missing client's subtest is
// skipped with the command that runs it:
//
//	sudo go test ./internal/clientmatrix/
package clientmatrix
