package vault

import (
	"fmt"
	"io"
	"log/slog"
	"maps"
	"time"

	"github.com/egressd/egressd/audit"
	"github.com/egressd/egressd/vault/storage"
)

// The actions of OAuth admin rows.
const (
	ActionOAuthOverrideSet     = "oauth.override.set"
	ActionOAuthOverrideDeleted = "oauth.override.deleted"
	ActionOAuthRefreshed       = "oauth.refreshed"
)

// OAuthOverride is a tenant's white-label app for one provider. Its client
// secret is sealed and never part of it: HasClientSecret says whether one
// is stored.
type OAuthOverride struct {
	TenantID        string            `json:"tenant_id"`
	Provider        string            `json:"provider"`
	ClientID        string            `json:"client_id"`
	HasClientSecret bool              `json:"has_client_secret"`
	CallbackURL     string            `json:"callback_url,omitempty"`
	DisplayName     string            `json:"display_name,omitempty"`
	Branding        map[string]string `json:"branding,omitempty"`
	CreatedAt       time.Time         `json:"created_at"`
	UpdatedAt       time.Time         `json:"updated_at"`
}

type storedOverride struct {
	OAuthOverride
	ClientSecret *sealed `json:"client_secret,omitempty"`
}

// OAuthOverrideInput sets an override. An empty ClientSecret keeps the
// one stored, if any.
type OAuthOverrideInput struct {
	ClientID     string            `json:"client_id"`
	ClientSecret string            `json:"client_secret"`
	CallbackURL  string            `json:"callback_url"`
	DisplayName  string            `json:"display_name"`
	Branding     map[string]string `json:"branding"`
}

// String never shows the client secret.
func (in OAuthOverrideInput) String() string {
	return fmt.Sprintf("OAuthOverrideInput{client_id=%q}", in.ClientID)
}

// Format never shows the client secret, whatever the verb.
func (in OAuthOverrideInput) Format(f fmt.State, _ rune) { io.WriteString(f, in.String()) }

// LogValue never shows the client secret.
func (in OAuthOverrideInput) LogValue() slog.Value { return slog.StringValue(in.String()) }

func overrideAD(tenantID, provider string) []byte {
	return []byte("egressd/oauth-override/v1\x00" + tenantID + "\x00" + provider + "\x00client_secret")
}

// PutOAuthOverride creates or replaces the tenant's override for provider
// (a name the caller checked).
func (s *Store) PutOAuthOverride(tenantID, provider string, in OAuthOverrideInput) (OAuthOverride, error) {
	if !ValidName(provider) {
		return OAuthOverride{}, invalid("provider", "must match [A-Za-z0-9_.-]{1,128}")
	}
	if in.ClientID == "" || !validExternalID(in.ClientID) {
		return OAuthOverride{}, invalid("client_id", "required, "+idRule, MaxIDLen)
	}
	if len(in.ClientSecret) > MaxValueLen {
		return OAuthOverride{}, invalid("client_secret", "at most %d bytes", MaxValueLen)
	}
	if len(in.DisplayName) > 128 || !validExternalID(in.DisplayName) {
		return OAuthOverride{}, invalid("display_name", idRule, 128)
	}
	if len(in.CallbackURL) > 2048 {
		return OAuthOverride{}, invalid("callback_url", "at most 2048 bytes")
	}
	if err := checkBranding(in.Branding); err != nil {
		return OAuthOverride{}, err
	}
	var out OAuthOverride
	err := s.update(tenantID, func(tx storage.Tx) error {
		if _, err := txTenant(tx, tenantID); err != nil {
			return err
		}
		var row storedOverride
		found, err := getJSON(tx.Bucket(bOAuthOverrides), key(tenantID, provider), &row)
		if err != nil {
			return err
		}
		now := s.stamp()
		if !found {
			row = storedOverride{OAuthOverride: OAuthOverride{TenantID: tenantID, Provider: provider, CreatedAt: now}}
		}
		row.ClientID, row.CallbackURL, row.DisplayName, row.Branding = in.ClientID, in.CallbackURL, in.DisplayName, maps.Clone(in.Branding)
		row.UpdatedAt = now
		if in.ClientSecret != "" {
			k, err := s.sealKey(tx)
			if err != nil {
				return err
			}
			c, err := k.seal([]byte(in.ClientSecret), overrideAD(tenantID, provider))
			if err != nil {
				return err
			}
			row.ClientSecret = c
		}
		row.HasClientSecret = row.ClientSecret != nil
		if err := putJSON(tx.Bucket(bOAuthOverrides), key(tenantID, provider), &row); err != nil {
			return err
		}
		out = row.OAuthOverride
		return s.txAudit(tx, ActionOAuthOverrideSet, audit.Row{TenantID: tenantID, Details: map[string]string{"provider": provider}})
	})
	return out, err
}

// OAuthOverride returns the tenant's override for provider; ErrNotFound
// if there is none.
func (s *Store) OAuthOverride(tenantID, provider string) (OAuthOverride, error) {
	var row storedOverride
	err := s.view(func(tx storage.Tx) error {
		ok, err := getJSON(tx.Bucket(bOAuthOverrides), key(tenantID, provider), &row)
		if err == nil && !ok {
			err = notFound("provider", "no oauth override for %q", provider)
		}
		return err
	})
	return row.OAuthOverride, err
}

// OAuthOverrideSecret opens the client secret of the tenant's override
// for provider (zero Value if none is stored). Only the OAuth code
// exchange and refresh call it.
func (s *Store) OAuthOverrideSecret(tenantID, provider string) (Value, error) {
	var row storedOverride
	err := s.view(func(tx storage.Tx) error {
		ok, err := getJSON(tx.Bucket(bOAuthOverrides), key(tenantID, provider), &row)
		if err == nil && !ok {
			err = notFound("provider", "no oauth override for %q", provider)
		}
		return err
	})
	if err != nil || row.ClientSecret == nil {
		return Value{}, err
	}
	b, err := s.keys.open(row.ClientSecret, overrideAD(tenantID, provider))
	if err != nil {
		return Value{}, fmt.Errorf("oauth override %q client secret: %w", provider, err)
	}
	return NewValue(b), nil
}

// ListOAuthOverrides lists the tenant's overrides.
func (s *Store) ListOAuthOverrides(tenantID string) ([]OAuthOverride, error) {
	out := []OAuthOverride{}
	err := s.view(func(tx storage.Tx) error {
		p := prefix(tenantID)
		c := tx.Bucket(bOAuthOverrides).Cursor()
		for k, v := c.Seek(p); k != nil && len(k) > len(p) && string(k[:len(p)]) == string(p); k, v = c.Next() {
			var row storedOverride
			if err := unmarshal(v, &row); err != nil {
				return err
			}
			out = append(out, row.OAuthOverride)
		}
		return nil
	})
	return out, err
}

// DeleteOAuthOverride removes the tenant's override for provider.
func (s *Store) DeleteOAuthOverride(tenantID, provider string) error {
	return s.update(tenantID, func(tx storage.Tx) error {
		b := tx.Bucket(bOAuthOverrides)
		if b.Get(key(tenantID, provider)) == nil {
			return notFound("provider", "no oauth override for %q", provider)
		}
		if err := b.Delete(key(tenantID, provider)); err != nil {
			return err
		}
		return s.txAudit(tx, ActionOAuthOverrideDeleted, audit.Row{TenantID: tenantID, Details: map[string]string{"provider": provider}})
	})
}

// rekeyOAuth re-wraps the sealed OAuth material (override client secrets,
// PKCE verifiers and authorize URLs of live flows) from oldKey to newKey inside Rekey's
// transaction.
func rekeyOAuth(tx storage.Tx, oldKey, newKey *MasterKey) error {
	ob := tx.Bucket(bOAuthOverrides)
	fb := tx.Bucket(bOAuthFlows)
	if ob == nil || fb == nil {
		return nil // a file from before OAuth
	}
	type put struct {
		b   storage.Bucket
		k   []byte
		row any
	}
	var puts []put
	err := ob.ForEach(func(k, v []byte) error {
		var row storedOverride
		if err := unmarshal(v, &row); err != nil {
			return err
		}
		if row.ClientSecret == nil {
			return nil
		}
		n, err := oldKey.rewrap(row.ClientSecret, overrideAD(row.TenantID, row.Provider), newKey)
		if err != nil {
			return fmt.Errorf("oauth override %s: %w", row.Provider, err)
		}
		row.ClientSecret = n
		puts = append(puts, put{ob, append([]byte(nil), k...), &row})
		return nil
	})
	if err != nil {
		return err
	}
	err = fb.ForEach(func(k, v []byte) error {
		var row storedFlow
		if err := unmarshal(v, &row); err != nil {
			return err
		}
		if row.Verifier == nil && row.AuthURL == nil {
			return nil
		}
		if row.Verifier != nil {
			n, err := oldKey.rewrap(row.Verifier, flowAD(row.TenantID, row.ID), newKey)
			if err != nil {
				return fmt.Errorf("oauth flow %s: %w", row.ID, err)
			}
			row.Verifier = n
		}
		if row.AuthURL != nil {
			n, err := oldKey.rewrap(row.AuthURL, authURLAD(row.TenantID, row.ID), newKey)
			if err != nil {
				return fmt.Errorf("oauth flow %s: %w", row.ID, err)
			}
			row.AuthURL = n
		}
		puts = append(puts, put{fb, append([]byte(nil), k...), &row})
		return nil
	})
	if err != nil {
		return err
	}
	for _, p := range puts {
		if err := putJSON(p.b, p.k, p.row); err != nil {
			return err
		}
	}
	return nil
}
