package main

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/egressd/egressd/certs"
	"github.com/egressd/egressd/resolver"
	"github.com/egressd/egressd/vault"
)

// Layout of the benchmark's temporary directory, shared with the children.
const (
	upstreamCADir = "upstream-ca" // the upstream's CA (ca.pem, ca-key.pem)
	egressdCADir  = ""            // egressd's MITM CA: the data dir's own (ca.pem), as serve keeps it
	goproxyCADir  = "goproxy-ca"  // the goproxy baseline's MITM CA
	masterKeyFile = "master.key"
	vaultFile     = "egressd.db"
	swapFile      = "swap.json" // what the goproxy baseline swaps (0600)
)

// world is what the phases share: the sandbox, its placeholders and the
// real values, and the CAs each kind of client trusts. The values are
// random and live only for one run.
type world struct {
	Dir         string
	TenantID    string
	SandboxID   string
	Token       string
	HeaderPH    string // placeholder of the header secret
	HeaderValue string
	BodyPH      string // placeholder of the body secret
	BodyValue   string
	Upstream    *certs.CA
	EgressdCA   *x509.CertPool
	GoproxyCA   *x509.CertPool
	UpstreamCA  *x509.CertPool
}

// swap is the goproxy baseline's whole configuration: one header value
// replaced by another.
type swap struct {
	From string `json:"from"`
	To   string `json:"to"`
}

// setup creates the CAs and a vault holding one tenant, one sandbox, a
// header secret allowed on hostAPI and a body secret allowed on hostBody,
// then closes the vault so that a child can open it.
func setup(dir string, noSync bool) (*world, error) {
	w := &world{Dir: dir}
	var err error
	pool := func(sub string) (*certs.CA, *x509.CertPool, error) {
		ca, _, err := certs.LoadOrCreateCA(filepath.Join(dir, sub))
		if err != nil {
			return nil, nil, fmt.Errorf("CA %s: %w", sub, err)
		}
		p := x509.NewCertPool()
		p.AddCert(ca.Certificate())
		return ca, p, nil
	}
	if w.Upstream, w.UpstreamCA, err = pool(upstreamCADir); err != nil {
		return nil, err
	}
	if _, w.EgressdCA, err = pool(egressdCADir); err != nil {
		return nil, err
	}
	if _, w.GoproxyCA, err = pool(goproxyCADir); err != nil {
		return nil, err
	}
	key := vault.NewMasterKey()
	if err := vault.WriteMasterKeyFile(filepath.Join(dir, masterKeyFile), key); err != nil {
		return nil, err
	}
	store, err := vault.Open(vault.Config{Path: filepath.Join(dir, vaultFile), MasterKey: key, NoSync: noSync})
	if err != nil {
		return nil, err
	}
	defer store.Close()
	if err := w.seed(store); err != nil {
		return nil, err
	}
	b, err := json.Marshal(swap{From: "Bearer " + w.HeaderPH, To: "Bearer " + w.HeaderValue})
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, swapFile), b, 0o600); err != nil {
		return nil, err
	}
	return w, nil
}

func (w *world) seed(store *vault.Store) error {
	tn, _, err := store.EnsureTenant("bench")
	if err != nil {
		return err
	}
	sbx, token, err := store.CreateSandbox(tn.ID, vault.SandboxInput{Name: "bench", OwnerUserID: "bench-user"})
	if err != nil {
		return err
	}
	w.TenantID, w.SandboxID, w.Token = tn.ID, sbx.ID, token
	w.HeaderValue = "sk-real-" + randomAlnum(40)
	w.BodyValue = "body-real-" + randomAlnum(40)
	secrets := []vault.SecretInput{
		{Name: "OPENAI_API_KEY", Value: w.HeaderValue, Scope: vault.ScopeTenant,
			AllowedHosts: []string{hostAPI}, PlaceholderPrefix: "sk-proj-"},
		{Name: "BODY_KEY", Value: w.BodyValue, Scope: vault.ScopeTenant, AllowedHosts: []string{hostBody},
			SubstituteIn: []vault.Location{vault.InHeader, vault.InBody}},
	}
	for _, in := range secrets {
		if _, err := store.UpsertSecret(tn.ID, in); err != nil {
			return fmt.Errorf("secret %s: %w", in.Name, err)
		}
	}
	res, err := resolver.New(resolver.Config{Store: store})
	if err != nil {
		return err
	}
	env, err := res.Env(context.Background(), tn.ID, sbx.ID)
	if err != nil {
		return err
	}
	for _, e := range env {
		switch e.Name {
		case "OPENAI_API_KEY":
			w.HeaderPH = e.Placeholder
		case "BODY_KEY":
			w.BodyPH = e.Placeholder
		}
	}
	if w.HeaderPH == "" || w.BodyPH == "" {
		return fmt.Errorf("no placeholders issued (env: %d entries)", len(env))
	}
	return nil
}

func randomAlnum(n int) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, n)
	rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

// jsonBody is a chat-completion-like JSON document of exactly size bytes
// (when size allows) carrying key once, in the middle of the messages.
func jsonBody(size int, key string) []byte {
	head := `{"model":"gpt-4o","stream":false,"messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"`
	mid := `"},{"role":"tool","name":"config","content":"api_key=` + key + `"},{"role":"user","content":"`
	tail := `"}]}`
	filler := size - len(head) - len(mid) - len(tail)
	if filler < 2 {
		filler = 2
	}
	words := strings.Repeat("the quick brown fox jumps over the lazy dog; ", filler/45+1)
	var b strings.Builder
	b.Grow(size)
	b.WriteString(head)
	b.WriteString(words[:filler/2])
	b.WriteString(mid)
	b.WriteString(words[:filler-filler/2])
	b.WriteString(tail)
	return []byte(b.String())
}
