// Package certs owns egressd's certificate authority and the leaf certificates
// it mints for the hosts whose TLS it terminates (MITM).
//
// # The CA on disk
//
// LoadOrCreateCA keeps the CA in a data directory as two files:
//
//	ca.pem      the CA certificate, PEM "CERTIFICATE", mode 0644
//	ca-key.pem  its private key, PEM "PRIVATE KEY" (PKCS#8, ECDSA), mode 0600
//
// On first run neither exists and a fresh ECDSA P-256 CA is created: both
// files are written to temporary names first and then linked into place, a
// step that never replaces a file that is already there. Later runs load and
// check the pair: the certificate must be a CA, unexpired, and hold the public
// half of the key. When exactly one of the two files exists the package
// refuses to guess and writes nothing (ErrCAIncomplete); nothing in this
// package ever overwrites or deletes a CA file it did not just create.
//
// Replicas that share a store (egressd serve --store with PostgreSQL) keep
// no CA files: the store holds one CA for all of them, its key sealed by
// the master key (vault.Store.SharedCA). NewCAPEM makes such a CA as PEM
// texts, ParseCA checks and loads them as the files are checked.
//
// The CA certificate is the one sandboxes trust (CertPEM feeds SSL_CERT_FILE
// and friends); TLSCertificate is the form goproxy takes as its MITM CA.
//
// # Leaf certificates
//
// A LeafCache mints one ECDSA P-256 certificate per host, signed by the CA
// (a P-256 CA signs a leaf in well under a millisecond, where a fresh RSA key
// costs tens of milliseconds). Leaves live in a bounded LRU. Their expiry is
// checked on every hit rather than by a timer, so the cache runs no goroutine;
// a leaf with less than an hour left is minted again. Concurrent misses for
// the same host share one mint (singleflight), so a burst of connections to a
// cold host costs one signature, not fifty.
//
// Host names are normalised before they become cache keys: a port is
// stripped, ASCII letters are lowercased, a trailing dot is dropped, IP
// literals become IP SANs; anything that is not a plain host name or IP
// literal is refused with ErrInvalidHost.
package certs
