package vault

import (
	"crypto/rand"
	"crypto/sha256"
)

const alnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// randomAlnum returns n characters of [A-Za-z0-9] from crypto/rand, without
// modulo bias.
func randomAlnum(n int) string {
	out := make([]byte, 0, n)
	var buf [64]byte
	for len(out) < n {
		rand.Read(buf[:])
		for _, b := range buf {
			// 248 = 4*62: bytes at or above it would bias the result.
			if b >= 248 {
				continue
			}
			out = append(out, alnum[b%62])
			if len(out) == n {
				break
			}
		}
	}
	return string(out)
}

// newID returns a typed random id such as "sec_3kT9...".
func newID(prefix string) string { return prefix + "_" + randomAlnum(20) }

// newToken returns a bearer token with ~238 bits of entropy.
func newToken(prefix string) string { return prefix + "_" + randomAlnum(40) }

// tokenHash is how tokens are stored: they are random, so a fast hash is
// enough to make the stored form useless to a reader of the file.
func tokenHash(token string) []byte {
	sum := sha256.Sum256([]byte("egressd/token/v1\x00" + token))
	return sum[:]
}

// Prefixes of ids and tokens.
const (
	prefixTenant   = "ten"
	prefixKey      = "key"
	prefixSecret   = "sec"
	prefixBinding  = "bnd"
	prefixSandbox  = "sbx"
	prefixComputer = "cmp"

	tokenAdmin    = "egk"
	tokenOperator = "ego"
	tokenBrowser  = "egb"
	tokenProxy    = "egt"
)
