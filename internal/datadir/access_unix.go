//go:build unix

package datadir

import "syscall"

// writable reports whether this process may create files in the directory
// dir (write and search permission, and not a read-only file system),
// without creating one.
func writable(dir string) error {
	const wOK, xOK = 0x2, 0x1
	return syscall.Access(dir, wOK|xOK)
}
