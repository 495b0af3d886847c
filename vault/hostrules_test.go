package vault

import (
	"errors"
	"net/netip"
	"slices"
	"testing"
)

// Regression: egress_deny_hosts took names only, so an IP literal or
// another name of a denied server passed; CIDRs are now stored as address rules.
func TestEgressRulesAcceptCIDRs(t *testing.T) {
	s := openTest(t)
	tn, _, err := s.EnsureTenant("acme")
	if err != nil {
		t.Fatal(err)
	}
	deny := []string{"Evil.Example.", "203.0.113.7/24", "::ffff:10.0.0.0/104", "2001:DB8::/32", "198.51.100.1", "203.0.113.0/24"}
	allow := []string{"api.example", "192.0.2.0/24"}
	st, err := s.UpdateSettings(tn.ID, SettingsPatch{EgressDenyHosts: &deny, EgressAllowHosts: &allow})
	if err != nil {
		t.Fatalf("CIDR rules refused: %v", err)
	}
	wantDeny := []string{"evil.example", "203.0.113.0/24", "10.0.0.0/8", "2001:db8::/32", "198.51.100.1"}
	if !slices.Equal(st.EgressDenyHosts, wantDeny) {
		t.Fatalf("deny stored as %q, want %q", st.EgressDenyHosts, wantDeny)
	}
	if !slices.Equal(st.EgressAllowHosts, []string{"api.example", "192.0.2.0/24"}) {
		t.Fatalf("allow stored as %q", st.EgressAllowHosts)
	}
	for _, bad := range []string{"10.0.0.0/33", "fe80::/10%eth0", "10.0.0.0/", "/8", "evil.example/8", "10.0.0.0/8/8"} {
		before, _ := s.Tenant(tn.ID)
		_, err := s.UpdateSettings(tn.ID, SettingsPatch{EgressDenyHosts: &[]string{bad}})
		var ve *ValidationError
		if !errors.Is(err, ErrInvalid) || !errors.As(err, &ve) || ve.Field != "egress_deny_hosts" {
			t.Errorf("%q: got %v, want an invalid egress_deny_hosts", bad, err)
		}
		after, _ := s.Tenant(tn.ID)
		if !slices.Equal(before.Settings.EgressDenyHosts, after.Settings.EgressDenyHosts) {
			t.Errorf("%q: a refused write changed the rules", bad)
		}
	}
}

func TestEgressRulesMatch(t *testing.T) {
	a := netip.MustParseAddr
	cases := []struct {
		name        string
		allow, deny []string
		host        string
		addr        netip.Addr
		nameOK      bool // EgressAllowed
		addrOK      bool // EgressAddrAllowed
	}{
		{"no rules", nil, nil, "any.example", a("1.2.3.4"), true, true},
		{"denied range stops a name", nil, []string{"1.2.3.0/24"}, "alias.example", a("1.2.3.4"), true, false},
		{"denied range stops an IP literal", nil, []string{"1.2.3.0/24"}, "1.2.3.4", a("1.2.3.4"), true, false},
		{"denied range, mapped address", nil, []string{"1.2.3.0/24"}, "x.example", a("::ffff:1.2.3.4"), true, false},
		{"denied IPv6 range", nil, []string{"2001:db8::/32"}, "x.example", a("2001:db8::1"), true, false},
		{"denied single address stops a name", nil, []string{"1.2.3.4"}, "alias.example", a("1.2.3.4"), true, false},
		{"denied single address, literal", nil, []string{"1.2.3.4"}, "1.2.3.4", a("1.2.3.4"), false, false},
		{"outside the denied range", nil, []string{"1.2.3.0/24"}, "x.example", a("1.2.4.1"), true, true},
		{"denied name", nil, []string{"*.evil.example"}, "a.evil.example", a("1.2.3.4"), false, true},
		{"name rule does not stop another name", nil, []string{"evil.example"}, "alias.example", a("1.2.3.4"), true, true},
		{"allowed name, any address", []string{"api.example"}, nil, "api.example", a("9.9.9.9"), true, true},
		{"not allowed name, no ranges", []string{"api.example"}, nil, "other.example", a("9.9.9.9"), false, false},
		{"allowed range lets a name through to the address", []string{"api.example", "9.9.9.0/24"}, nil, "other.example", a("9.9.9.9"), true, true},
		{"allowed range, address outside", []string{"9.9.9.0/24"}, nil, "other.example", a("8.8.8.8"), true, false},
		{"deny range wins over allowed name", []string{"api.example"}, []string{"9.9.9.0/24"}, "api.example", a("9.9.9.9"), true, false},
		{"deny name wins over allowed range", []string{"9.9.9.0/24"}, []string{"bad.example"}, "bad.example", a("9.9.9.9"), false, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := Settings{EgressAllowHosts: c.allow, EgressDenyHosts: c.deny}
			if got := s.EgressAllowed(c.host); got != c.nameOK {
				t.Errorf("EgressAllowed(%s) = %v, want %v", c.host, got, c.nameOK)
			}
			if got := s.EgressAddrAllowed(c.host, c.addr); got != c.addrOK {
				t.Errorf("EgressAddrAllowed(%s, %s) = %v, want %v", c.host, c.addr, got, c.addrOK)
			}
		})
	}
}

func TestAddressRulesKey(t *testing.T) {
	names := Settings{EgressAllowHosts: []string{"api.example"}, EgressDenyHosts: []string{"*.evil.example"}}
	if names.HasAddressRules() || names.AddressRulesKey() != "" {
		t.Fatalf("name rules only: HasAddressRules %v, key %q", names.HasAddressRules(), names.AddressRulesKey())
	}
	a := Settings{EgressDenyHosts: []string{"evil.example", "10.0.0.0/8"}}
	b := Settings{EgressAllowHosts: []string{"10.0.0.0/8"}}
	if !a.HasAddressRules() || !b.HasAddressRules() {
		t.Fatal("address rules not seen")
	}
	if a.AddressRulesKey() == b.AddressRulesKey() {
		t.Fatalf("an allowed and a denied range share the key %q", a.AddressRulesKey())
	}
}
