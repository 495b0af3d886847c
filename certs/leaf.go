package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/sync/singleflight"
)

// Defaults and bounds of a LeafConfig.
const (
	// DefaultLeafCacheSize is the number of leaves kept when LeafConfig.Size is zero.
	DefaultLeafCacheSize = 1024
	// DefaultLeafValidity is a leaf's lifetime when LeafConfig.Validity is zero.
	DefaultLeafValidity = 7 * 24 * time.Hour
	// MinLeafValidity is the shortest LeafConfig.Validity accepted: a leaf is
	// minted again once less than LeafRenewBefore remains, so a shorter one
	// would barely be served from the cache.
	MinLeafValidity = 2 * LeafRenewBefore
	// MaxLeafValidity is the longest LeafConfig.Validity accepted: Apple's
	// TLS clients refuse server certificates valid for more than 825 days,
	// whatever root they chain to.
	MaxLeafValidity = 825 * 24 * time.Hour
	// LeafRenewBefore is how much validity a cached leaf must have left to
	// be served; one with less is minted again.
	LeafRenewBefore = time.Hour
)

// LeafConfig configures a LeafCache. The zero value is ready to use.
type LeafConfig struct {
	// Size is the most leaves kept; when full, the least recently used one
	// is dropped. Zero means DefaultLeafCacheSize; negative is refused.
	Size int

	// Validity is how long a leaf is valid from the moment it is minted (its
	// NotBefore is also set an hour in the past, for clients whose clocks lag).
	// It is cut short where the CA itself expires. Zero means
	// DefaultLeafValidity; otherwise it must lie within MinLeafValidity and
	// MaxLeafValidity.
	Validity time.Duration

	// Now is the clock used for validity and expiry checks. Nil means time.Now.
	Now func() time.Time
}

// LeafCache mints leaf certificates signed by a CA and keeps the most
// recently used ones. It is safe for concurrent use and starts no goroutine.
type LeafCache struct {
	ca       *CA
	validity time.Duration
	now      func() time.Time
	cache    *lru.Cache[string, *tls.Certificate]
	flight   singleflight.Group

	minted atomic.Uint64 // leaves minted so far; read by tests

	// beforeMint, when set (by tests), runs at the start of every mint.
	beforeMint func(host string)
}

// NewLeafCache returns a LeafCache minting leaves signed by ca. Its errors
// wrap ErrInvalidConfig.
func NewLeafCache(ca *CA, cfg LeafConfig) (*LeafCache, error) {
	if ca == nil {
		return nil, fmt.Errorf("%w: no CA", ErrInvalidConfig)
	}
	size := cfg.Size
	switch {
	case size < 0:
		return nil, fmt.Errorf("%w: size %d is negative", ErrInvalidConfig, size)
	case size == 0:
		size = DefaultLeafCacheSize
	}
	validity := cfg.Validity
	switch {
	case validity == 0:
		validity = DefaultLeafValidity
	case validity < MinLeafValidity || validity > MaxLeafValidity:
		return nil, fmt.Errorf("%w: validity %s is outside [%s, %s]", ErrInvalidConfig, validity, MinLeafValidity, MaxLeafValidity)
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	cache, err := lru.New[string, *tls.Certificate](size)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return &LeafCache{ca: ca, validity: validity, now: now, cache: cache}, nil
}

// Get returns a leaf certificate for host, minting one on a miss. host may
// carry a port, which is ignored; names are matched case-insensitively. The
// certificate's chain is [leaf, CA] and its Leaf field is set. It is shared
// with other callers and must not be modified.
//
// Errors wrap ErrInvalidHost for a host no certificate can name, and
// ErrCAExpired once the CA is past its NotAfter.
func (c *LeafCache) Get(host string) (*tls.Certificate, error) {
	name, err := normalizeHost(host)
	if err != nil {
		return nil, err
	}
	if cert, ok := c.cache.Get(name.key); ok && c.fresh(cert) {
		return cert, nil
	}
	v, err, _ := c.flight.Do(name.key, func() (any, error) {
		// A flight for this host may have finished between the lookup
		// above and joining this one: look again before signing.
		if cert, ok := c.cache.Peek(name.key); ok && c.fresh(cert) {
			return cert, nil
		}
		cert, err := c.mint(name)
		if err != nil {
			return nil, err
		}
		c.cache.Add(name.key, cert)
		return cert, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*tls.Certificate), nil
}

// GetCertificate serves the leaf for the server name a TLS client asked for;
// it fits tls.Config.GetCertificate. A client that sent no server name (SNI)
// gets ErrInvalidHost: this cache cannot know which host it meant.
func (c *LeafCache) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if hello.ServerName == "" {
		return nil, fmt.Errorf("%w: client sent no server name", ErrInvalidHost)
	}
	return c.Get(hello.ServerName)
}

// Len returns the number of leaves cached, for a gauge.
func (c *LeafCache) Len() int { return c.cache.Len() }

// fresh reports whether cert may still be served: it is already valid and
// has at least LeafRenewBefore left.
func (c *LeafCache) fresh(cert *tls.Certificate) bool {
	now := c.now()
	return !now.Before(cert.Leaf.NotBefore) && cert.Leaf.NotAfter.Sub(now) >= LeafRenewBefore
}

// mint creates and signs a new leaf for name.
func (c *LeafCache) mint(name leafName) (*tls.Certificate, error) {
	if c.beforeMint != nil {
		c.beforeMint(name.key)
	}
	now := c.now()
	caCert := c.ca.cert
	if now.After(caCert.NotAfter) {
		return nil, fmt.Errorf("%w: it expired on %s", ErrCAExpired, caCert.NotAfter.UTC().Format(time.RFC3339))
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("certs: generate leaf key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	notBefore := now.Add(-clockSkew)
	if notBefore.Before(caCert.NotBefore) {
		notBefore = caCert.NotBefore
	}
	notAfter := now.Add(c.validity)
	if notAfter.After(caCert.NotAfter) {
		notAfter = caCert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"egressd"}},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	// Clients match the SAN; the common name is only for people reading
	// the certificate, and cannot exceed 64 bytes.
	if len(name.key) <= maxCommonNameLen {
		tmpl.Subject.CommonName = name.key
	}
	if name.ip.IsValid() {
		tmpl.IPAddresses = []net.IP{name.ip.AsSlice()}
	} else {
		tmpl.DNSNames = []string{name.key}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, c.ca.key)
	if err != nil {
		return nil, fmt.Errorf("certs: sign leaf for %q: %w", name.key, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("certs: parse leaf for %q: %w", name.key, err)
	}
	c.minted.Add(1)
	return &tls.Certificate{
		Certificate: [][]byte{der, caCert.Raw},
		PrivateKey:  key,
		Leaf:        leaf,
	}, nil
}
