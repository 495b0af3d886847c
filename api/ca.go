package api

import (
	"bytes"
	"errors"
	"io/fs"
	"net/http"
	"os"
	"sync"
)

// systemRootFiles are where Linux distributions keep the system roots as
// one PEM file (the list crypto/x509 reads), in order of preference.
var systemRootFiles = []string{
	"/etc/ssl/certs/ca-certificates.crt",                // Debian, Ubuntu, Gentoo, Alpine
	"/etc/pki/tls/certs/ca-bundle.crt",                  // Fedora, RHEL 6
	"/etc/ssl/ca-bundle.pem",                            // openSUSE
	"/etc/pki/tls/cacert.pem",                           // OpenELEC
	"/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem", // CentOS, RHEL 7
	"/etc/ssl/cert.pem",                                 // Alpine, macOS
}

// systemRoots reads the system roots once: the file SystemRootsFile names,
// or the first of systemRootFiles that exists.
type systemRoots struct {
	file string
	once sync.Once
	pem  []byte
	err  error
}

func (s *systemRoots) get() ([]byte, error) {
	s.once.Do(func() {
		files := systemRootFiles
		if s.file != "" {
			files = []string{s.file}
		}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				s.err = err
				return
			}
			if !bytes.Contains(b, []byte("-----BEGIN CERTIFICATE-----")) {
				continue
			}
			s.pem = b
			return
		}
		s.err = errors.New("no system root certificates found on this server")
	})
	return s.pem, s.err
}

// caPEM answers egressd's CA certificate, which sandboxes must trust; with
// ?bundle=system, the system roots of this server followed by it, the file
// the env's CA-trust variables should point at. Certificates are public:
// no key is needed.
func (s *Server) caBundle(w http.ResponseWriter, r *http.Request, _ *principal) error {
	if s.caPEM == "" {
		return errorf(ErrNotFound, "this server has no CA certificate configured")
	}
	var out []byte
	switch r.URL.Query().Get("bundle") {
	case "":
		out = []byte(s.caPEM)
	case "system":
		roots, err := s.roots.get()
		if err != nil {
			return errorf(ErrNotImplemented, "%v: build the bundle from the sandbox image's own roots and GET /api/v1/ca.pem", err)
		}
		out = make([]byte, 0, len(roots)+len(s.caPEM)+64)
		out = append(out, roots...)
		if len(out) > 0 && out[len(out)-1] != '\n' {
			out = append(out, '\n')
		}
		out = append(out, "# egressd CA\n"...)
		out = append(out, s.caPEM...)
	default:
		return errorf(ErrBadRequest, "bundle: want system, or leave it out for egressd's CA alone")
	}
	w.Header().Set("Content-Type", "application/x-pem-file")
	w.Header().Set("Content-Disposition", `attachment; filename="egressd-ca.pem"`)
	w.WriteHeader(http.StatusOK)
	w.Write(out)
	return nil
}
