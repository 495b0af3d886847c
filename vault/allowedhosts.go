package vault

import (
	"fmt"
	"slices"
	"strings"

	"github.com/egressd/egressd/vault/storage"
	"golang.org/x/net/publicsuffix"
)

// AnyHost is the allowed_hosts entry that lets a secret go to any host. A
// tenant stores it only while its allow_any_host_secrets setting is on, and
// such a secret resolves only while that setting stays on.
const AnyHost = "*"

// NormalizeSecretHost checks one allowed_hosts entry of a secret (or of an
// OAuth provider, whose tokens become secrets): an exact host name, an IP
// address, AnyHost, or "*.domain" where domain is not a public suffix. A
// wildcard over a public suffix, ICANN ("*.co.uk") or private
// ("*.github.io"), or over a top-level domain the list does not know, would
// match hosts of unrelated owners. It returns the normalized form.
func NormalizeSecretHost(p string) (string, error) {
	if strings.TrimSpace(p) == AnyHost {
		return AnyHost, nil
	}
	n, ok := NormalizeHostPattern(p)
	if !ok {
		return "", fmt.Errorf("%q is not a host name, IP address or *.domain", p)
	}
	if base, ok := strings.CutPrefix(n, "*."); ok {
		if ps, _ := publicsuffix.PublicSuffix(base); ps == base {
			return "", fmt.Errorf("%q is a wildcard over the public suffix %q, whose names belong to unrelated owners: name the hosts, or a domain of one owner (*.example.co.uk)", p, base)
		}
	}
	return n, nil
}

// normalizeSecretHosts checks a secret's allowed_hosts: required, at most
// MaxAllowedHosts entries, each one NormalizeSecretHost accepts. Whether
// the tenant takes AnyHost is checked in the write's transaction.
func normalizeSecretHosts(in []string) ([]string, error) {
	const field = "allowed_hosts"
	if len(in) == 0 {
		return nil, invalid(field, `required: the hosts this secret may be sent to (host names, IP addresses or *.domain; ["*"] for any host where the tenant's allow_any_host_secrets is on)`)
	}
	if len(in) > MaxAllowedHosts {
		return nil, invalid(field, "at most %d entries", MaxAllowedHosts)
	}
	out := make([]string, 0, len(in))
	for _, h := range in {
		n, err := NormalizeSecretHost(h)
		if err != nil {
			return nil, invalid(field, "%v", err)
		}
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out, nil
}

// AnyHostAllowed reports whether hosts lets a secret go to any host.
func AnyHostAllowed(hosts []string) bool { return slices.Contains(hosts, AnyHost) }

// checkAnyHost refuses AnyHost in a secret's allowed_hosts unless the
// tenant's settings allow it.
func checkAnyHost(t *Tenant, hosts []string) error {
	if AnyHostAllowed(hosts) && !t.Settings.AllowAnyHostSecrets {
		return forbidden("allowed_hosts", `["*"] (any host) needs the tenant setting allow_any_host_secrets on; name the hosts instead`)
	}
	return nil
}

// SecretsWithoutHosts counts the secrets of every tenant that have no
// allowed_hosts: rows written by versions that took an empty list as "any
// host". They no longer resolve until they are stored again with hosts.
func (s *Store) SecretsWithoutHosts() (int, error) {
	n := 0
	err := s.view(func(tx storage.Tx) error {
		return tx.Bucket(bSecrets).ForEach(func(_, v []byte) error {
			// Only the hosts are decoded (json copies them out of
			// the transaction's memory).
			var row struct {
				AllowedHosts []string `json:"allowed_hosts"`
			}
			if err := unmarshal(v, &row); err != nil {
				return err
			}
			if len(row.AllowedHosts) == 0 {
				n++
			}
			return nil
		})
	})
	return n, err
}
