//go:build !unix

package proxy

import "errors"

// directPath: without a peek at idle sockets, every request takes the
// transport.
const directPath = false

func (dc *directConn) peekSocket(uintptr) { dc.peekQuiet = false }

// recvNow: without the direct path no probe runs; were one to, the
// connection is not quiet.
func (c *probeConn) recvNow(uintptr) { c.n, c.err = 0, errors.ErrUnsupported }
