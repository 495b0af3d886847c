//go:build !unix

package proxy

import "syscall"

// directPath: without a peek at idle sockets, every request takes the
// transport.
const directPath = false

func socketQuiet(syscall.RawConn) bool { return false }
