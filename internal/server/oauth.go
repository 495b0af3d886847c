package server

import (
	"log/slog"
	"net"

	"github.com/egressd/egressd/internal/config"
	"github.com/egressd/egressd/oauth"
	"github.com/egressd/egressd/vault"
)

// newOAuth builds the OAuth service: the providers read from
// --oauth-providers and the callback base (--public-url, or the admin
// listener's address).
func newOAuth(s config.Serve, cat *oauth.Catalogue, store *vault.Store, admin net.Addr, log *slog.Logger) (*oauth.Service, error) {
	public := s.PublicURL
	if public == "" {
		host, port, _ := net.SplitHostPort(admin.String())
		if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
			host = "localhost"
		}
		public = "http://" + net.JoinHostPort(host, port)
	}
	svc, err := oauth.New(oauth.Config{Store: store, Catalogue: cat, PublicURL: public, Logger: log.With("component", "oauth")})
	if err != nil {
		return nil, err
	}
	configured := 0
	for _, p := range cat.List() {
		if p.ClientID() != "" {
			configured++
		}
	}
	log.Info("oauth ready", "callback", public+oauth.CallbackPath, "providers", len(cat.List()), "with_operator_app", configured)
	return svc, nil
}
