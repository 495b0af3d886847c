//go:build !unix

package proxy

// rawReads: no raw socket reads here; relayReader holds its buffer over
// the wait.
const rawReads = false

func (r *relayReader) rawRead(uintptr) bool { return true }
