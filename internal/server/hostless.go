package server

import (
	"log/slog"

	"github.com/egressd/egressd/vault"
)

// warnHostlessSecrets says at start how many secrets have no allowed_hosts:
// versions that read none as "any host" stored them, and they no longer
// resolve until they are stored again with hosts.
func warnHostlessSecrets(log *slog.Logger, st *vault.Store) {
	n, err := st.SecretsWithoutHosts()
	switch {
	case err != nil:
		log.Error("could not count the secrets without allowed_hosts", "err", err)
	case n > 0:
		log.Warn("secrets without allowed_hosts no longer resolve (explain says no_allowed_hosts): store each again with its allowed_hosts", "count", n)
	}
}
