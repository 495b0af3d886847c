package golden

import (
	"strings"
	"testing"
)

// A secret a case marks refused must be refused, and for that field:
// stored anyway, or refused for another reason, the setup fails.
func TestRefusedSecretMustBeRefused(t *testing.T) {
	for name, c := range map[string]struct{ secret, want string }{
		"stored anyway":       {`{"name": "k", "value": "v", "scope": "tenant", "allowed_hosts": ["api.openai.test"], "refused": "allowed_hosts"}`, "stored, but the case expects it refused for allowed_hosts"},
		"refused for another": {`{"name": "k", "value": "v", "scope": "user", "allowed_hosts": ["api.openai.test"], "refused": "allowed_hosts"}`, "refused, but not for allowed_hosts: owner_user_id:"},
	} {
		t.Run(name, func(t *testing.T) {
			data := "x\n\n-- setup --\n{\"sandboxes\": {\"sbx1\": {}}, \"secrets\": [" + c.secret + "]}\n" +
				"-- request --\n# sandbox: sbx1\nGET / HTTP/1.1\nHost: api.openai.test\n-- upstream --\nnone\n-- response --\nstatus: 200\n-- audit --\nnone\n"
			cs, err := Parse(name, []byte(data))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := Run(cs, t.TempDir(), false); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("run: %v, want an error saying %q", err, c.want)
			}
		})
	}
	if _, err := Parse("x", []byte("x\n\n-- setup --\n{\"secrets\": [{\"name\": \"k\", \"refused\": \"allowed_hosts\", \"disabled\": true}]}\n-- request --\nGET / HTTP/1.1\nHost: a.test\n-- upstream --\nnone\n-- response --\nstatus: 200\n-- audit --\nnone\n")); err == nil {
		t.Fatal("a refused secret that is also disabled parsed")
	}
}
