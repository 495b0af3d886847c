package clientmatrix

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// upstreamHost is the name the clients call; egressd resolves it to
// 127.0.0.1 (--static-hosts) and verifies the upstream's certificate for it.
const upstreamHost = "upstream.test"

// arrival is one request as the upstream received it.
type arrival struct {
	Method, Path, Authorization string
}

// upstream is a loopback HTTPS server for upstreamHost. It records every
// request; /repo.git/ is git smart HTTP (git http-backend) behind Basic auth
// whose password must be the real value; any other path answers JSON that
// echoes the Authorization it received (egressd masks the real value in it
// back to the placeholder, so a client's output never shows it).
type upstream struct {
	srv    *httptest.Server
	port   int
	caFile string // the upstream CA, for egressd's --upstream-ca
	secret string // the real value

	git http.Handler // nil when git is missing

	mu   sync.Mutex
	reqs []arrival
}

func startUpstream(t *testing.T, secret string, git http.Handler) *upstream {
	t.Helper()
	caPEM, leaf := upstreamCert(t)
	u := &upstream{secret: secret, git: git, caFile: filepath.Join(t.TempDir(), "upstream-ca.pem")}
	if err := os.WriteFile(u.caFile, caPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	u.srv = httptest.NewUnstartedServer(u)
	u.srv.TLS = &tls.Config{Certificates: []tls.Certificate{leaf}}
	u.srv.StartTLS()
	t.Cleanup(u.srv.Close)
	u.port = u.srv.Listener.Addr().(*net.TCPAddr).Port
	return u
}

func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u.mu.Lock()
	u.reqs = append(u.reqs, arrival{Method: r.Method, Path: r.URL.Path, Authorization: r.Header.Get("Authorization")})
	u.mu.Unlock()
	if strings.HasPrefix(r.URL.Path, "/repo.git/") {
		// git sends credentials only after a challenge.
		if _, pass, ok := r.BasicAuth(); !ok || pass != u.secret || u.git == nil {
			w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
			http.Error(w, "authentication required", http.StatusUnauthorized)
			return
		}
		u.git.ServeHTTP(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]string{"ok": "yes", "path": r.URL.Path, "authorization_seen": r.Header.Get("Authorization")})
}

// url is https://upstream.test:PORT/path.
func (u *upstream) url(path string) string {
	return "https://" + net.JoinHostPort(upstreamHost, strconv.Itoa(u.port)) + path
}

// mark is the number of requests so far; since(mark) returns the later ones.
func (u *upstream) mark() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.reqs)
}

func (u *upstream) since(n int) []arrival {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]arrival(nil), u.reqs[n:]...)
}

// gitBackend serves the bare repositories under root with git http-backend
// through CGI.
func gitBackend(gitPath, root, home string) http.Handler {
	return &cgi.Handler{
		Path: gitPath,
		Args: []string{"http-backend"},
		Env:  []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1", "HOME=" + home, "GIT_CONFIG_NOSYSTEM=1"},
	}
}

// upstreamCert makes a CA and a leaf for upstreamHost signed by it; it
// returns the CA as PEM and the leaf.
func upstreamCert(t *testing.T) ([]byte, tls.Certificate) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "clientmatrix upstream CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: upstreamHost},
		DNSNames:     []string{upstreamHost},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, &leafKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		tls.Certificate{Certificate: [][]byte{leafDER}, PrivateKey: leafKey}
}
