package server

import (
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"

	"github.com/egressd/egressd/internal/config"
	"github.com/egressd/egressd/internal/datadir"
	"github.com/egressd/egressd/oauth"
)

// Prepare checks everything serve needs before anything is created or
// printed: the settings (Serve.Check), that the data dir and the master key
// can be used or created (with a PostgreSQL --store the key must exist),
// the files the flags name (--upstream-ca, --oauth-providers), a
// PostgreSQL --store by connecting to it (and applying its migrations),
// and every listen address, by binding it. The bound
// listeners are the ones Run serves on, so no other process can take a port
// in between. Only when all of that passed does it open the data dir,
// creating on a first run the directory, the master key, the vault and the
// CA. It logs nothing; an error names the flag and the problem in one line.
// The caller calls Run, or Close to give everything back.
func Prepare(cfg Config) (*Server, error) {
	if cfg.AdminAPI == nil {
		return nil, errors.New("server: no admin API")
	}
	s := cfg.Serve
	if err := s.Check(); err != nil {
		return nil, err
	}
	dir := datadir.Dir(s.DataDir)
	err := dir.Check()
	if err != nil {
		return nil, err
	}
	if s.Store.Postgres() {
		err = cfg.KeySource.CheckShared()
	} else {
		err = cfg.KeySource.Check(dir)
	}
	if err != nil {
		return nil, err
	}
	roots, err := upstreamRoots(s.UpstreamCA)
	if err != nil {
		return nil, err
	}
	cat, err := catalogue(s.OAuthProviders)
	if err != nil {
		return nil, err
	}
	// Last of the checks, as it is the slowest: a shared store is reached
	// (and migrated), so a wrong DSN or password fails here.
	shared, err := openStore(s)
	if err != nil {
		return nil, err
	}
	socks, err := bindAll(s)
	if err != nil {
		if shared != nil {
			shared.Close()
		}
		return nil, err
	}
	var o *datadir.Opened
	if shared != nil {
		o, err = datadir.OpenShared(dir, cfg.KeySource, shared, storeName(s))
	} else {
		o, err = datadir.Open(dir, cfg.KeySource)
	}
	if err != nil {
		socks.close()
		return nil, err
	}
	for _, f := range []string{datadir.AdminAddrFile, datadir.MetricsAddrFile, datadir.ProxyAddrFile, datadir.TransparentAddrFile} {
		_ = os.Remove(dir.Path(f)) // a stale file from a run that crashed
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	out := cfg.Stdout
	if out == nil {
		out = io.Discard
	}
	return &Server{cfg: cfg, s: s, log: log, out: out, dir: dir, socks: socks, roots: roots, cat: cat, o: o, shared: shared}, nil
}

// sockets are the bound listeners of one egressd.
type sockets struct {
	proxy, admin, metrics net.Listener
	// public is nil without --public-listen, transparent without
	// --transparent-listen.
	public, transparent net.Listener
}

// bindAll binds every listen address of s. On an error the ones bound so
// far are closed again.
func bindAll(s config.Serve) (*sockets, error) {
	var out sockets
	for _, l := range []struct {
		flag, addr string
		ln         *net.Listener
	}{
		{"--proxy-listen", s.ProxyListen, &out.proxy},
		{"--admin-listen", s.AdminListen, &out.admin},
		{"--metrics-listen", s.MetricsListen, &out.metrics},
		{"--public-listen", s.PublicListen, &out.public},
		{"--transparent-listen", s.TransparentListen, &out.transparent},
	} {
		if l.addr == "" {
			continue // --public-listen and --transparent-listen are optional
		}
		ln, err := net.Listen("tcp", l.addr)
		if err != nil {
			out.close()
			return nil, &config.FlagError{Flag: l.flag, Value: l.addr, Err: err}
		}
		*l.ln = ln
	}
	return &out, nil
}

// close closes every listener that is bound (again, for one a server has
// closed already: harmless).
func (s *sockets) close() {
	for _, ln := range []net.Listener{s.proxy, s.admin, s.metrics, s.public, s.transparent} {
		if ln != nil {
			_ = ln.Close()
		}
	}
}

// upstreamRoots is the system pool plus the PEM certificates in file (at
// least one); an empty file name means the system pool (nil).
func upstreamRoots(file string) (*x509.CertPool, error) {
	if file == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, &config.FlagError{Flag: "--upstream-ca", Value: file, Err: err}
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, &config.FlagError{Flag: "--upstream-ca", Value: file, Err: errors.New("no PEM certificate in it")}
	}
	return pool, nil
}

// catalogue reads the OAuth providers file (--oauth-providers); an empty
// name means the built-in providers.
func catalogue(file string) (*oauth.Catalogue, error) {
	if file != "" {
		if _, err := os.ReadFile(file); err != nil {
			return nil, &config.FlagError{Flag: "--oauth-providers", Value: file, Err: err}
		}
	}
	cat, err := oauth.NewCatalogue(file)
	if err != nil {
		return nil, &config.FlagError{Flag: "--oauth-providers", Err: err}
	}
	return cat, nil
}
