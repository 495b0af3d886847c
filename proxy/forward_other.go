//go:build !unix

package proxy

// directPath: without a peek at idle sockets, every request takes the
// transport.
const directPath = false

func (dc *directConn) peekSocket(uintptr) { dc.peekQuiet = false }
