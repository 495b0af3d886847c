//go:build !unix

package datadir

// writable cannot be asked without writing on this system; Open reports a
// directory it cannot write in.
func writable(string) error { return nil }
