package vault

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"unicode"

	"golang.org/x/crypto/chacha20poly1305"
)

// MasterKeySize is the length of a master key in bytes.
const MasterKeySize = chacha20poly1305.KeySize

// MasterKey wraps the per-secret data keys. It cannot be printed: every
// fmt verb, slog and JSON show only its id. The key bytes are reachable
// only through a func, which fmt never looks into, so even a MasterKey
// reached through an unexported struct field (where fmt calls none of its
// methods) prints no key material.
type MasterKey struct {
	id  string
	key func() *[MasterKeySize]byte
}

// bytes is the key material.
func (k *MasterKey) bytes() []byte { return k.key()[:] }

// ParseMasterKey reads a master key from its text form: 32 bytes in
// standard or URL base64, or in hex, surrounding space ignored. Text with
// two keys (a ring, ParseMasterKeys) is refused.
func ParseMasterKey(text []byte) (*MasterKey, error) {
	if n := len(splitKeys(text)); n > 1 {
		return nil, fmt.Errorf("%w: it holds %d keys; two keys (a key ring) are for a shared store (--store) only", ErrBadMasterKey, n)
	}
	return parseOneKey(text)
}

// ParseMasterKeys reads a key ring: one master key, or two separated by
// white space (one a line in a file) or a comma, each in ParseMasterKey's
// form. Around an online rekey of a shared store each replica holds the
// current key and the next one (RekeyStore); the first key is the one a
// new vault is sealed with. More than MaxMasterKeys keys, or one key
// twice, is refused.
func ParseMasterKeys(text []byte) ([]*MasterKey, error) {
	fields := splitKeys(text)
	switch {
	case len(fields) == 0:
		return nil, fmt.Errorf("%w: empty; want %d bytes in base64 or hex", ErrBadMasterKey, MasterKeySize)
	case len(fields) > MaxMasterKeys:
		return nil, fmt.Errorf("%w: %d keys, at most %d (the current one and the next)", ErrBadMasterKey, len(fields), MaxMasterKeys)
	}
	keys := make([]*MasterKey, 0, len(fields))
	for i, f := range fields {
		k, err := parseOneKey(f)
		if err != nil {
			return nil, fmt.Errorf("key %d of %d: %w", i+1, len(fields), err)
		}
		for _, o := range keys {
			if o.Equal(k) {
				return nil, fmt.Errorf("%w: key %s given twice", ErrBadMasterKey, k.id)
			}
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// LoadMasterKeysFile reads a key ring (ParseMasterKeys) from path.
func LoadMasterKeysFile(path string) ([]*MasterKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read master key: %w", err)
	}
	ks, err := ParseMasterKeys(b)
	clear(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return ks, nil
}

// splitKeys cuts text at white space and commas (slices of text).
func splitKeys(text []byte) [][]byte {
	return bytes.FieldsFunc(text, func(r rune) bool { return r == ',' || unicode.IsSpace(r) })
}

func parseOneKey(text []byte) (*MasterKey, error) {
	s := strings.TrimSpace(string(text))
	var raw []byte
	var err error
	switch {
	case len(s) == 2*MasterKeySize:
		raw, err = hex.DecodeString(s)
	default:
		// Padding is optional in both alphabets.
		trimmed := strings.TrimRight(s, "=")
		raw, err = base64.RawStdEncoding.DecodeString(trimmed)
		if err != nil {
			raw, err = base64.RawURLEncoding.DecodeString(trimmed)
		}
	}
	if err != nil || len(raw) != MasterKeySize {
		clear(raw)
		return nil, fmt.Errorf("%w: want %d bytes in base64 or hex", ErrBadMasterKey, MasterKeySize)
	}
	kb := new([MasterKeySize]byte)
	copy(kb[:], raw)
	clear(raw)
	k := &MasterKey{key: func() *[MasterKeySize]byte { return kb }}
	sum := sha256.Sum256(append([]byte("egressd/key-id/v1\x00"), kb[:]...))
	k.id = hex.EncodeToString(sum[:8])
	return k, nil
}

// NewMasterKey returns a fresh random master key.
func NewMasterKey() *MasterKey {
	var raw [MasterKeySize]byte
	rand.Read(raw[:])
	k, _ := ParseMasterKey([]byte(base64.StdEncoding.EncodeToString(raw[:])))
	clear(raw[:])
	return k
}

// LoadMasterKeyFile reads a master key from path.
func LoadMasterKeyFile(path string) (*MasterKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read master key: %w", err)
	}
	k, err := ParseMasterKey(b)
	clear(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// LoadOrCreateMasterKeyFile reads the master key at path, or creates a new
// one there (mode 0600) if the file does not exist. created says which.
func LoadOrCreateMasterKeyFile(path string) (k *MasterKey, created bool, err error) {
	k, err = LoadMasterKeyFile(path)
	if err == nil {
		return k, false, nil
	}
	if !os.IsNotExist(unwrapPathErr(err)) {
		return nil, false, err
	}
	k = NewMasterKey()
	if err := WriteMasterKeyFile(path, k); err != nil {
		return nil, false, err
	}
	return k, true, nil
}

// WriteMasterKeyFile writes k to path with mode 0600. It refuses to replace
// an existing file.
func WriteMasterKeyFile(path string, k *MasterKey) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("create key dir: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("create master key: %w", err)
	}
	_, err = f.WriteString(base64.StdEncoding.EncodeToString(k.bytes()) + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("write master key: %w", err)
	}
	return nil
}

func unwrapPathErr(err error) error {
	for err != nil {
		if pe, ok := err.(*os.PathError); ok {
			return pe
		}
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return err
		}
		err = u.Unwrap()
	}
	return err
}

// ID is a short fingerprint of the key, safe to log.
func (k *MasterKey) ID() string { return k.id }

// The printing methods have value receivers so that a MasterKey and a
// *MasterKey both redact.

// String never shows the key.
func (k MasterKey) String() string { return "MasterKey(" + k.id + ")" }

// GoString never shows the key.
func (k MasterKey) GoString() string { return k.String() }

// Format never shows the key, whatever the verb (%d and %x included).
func (k MasterKey) Format(f fmt.State, _ rune) { io.WriteString(f, k.String()) }

// LogValue never shows the key.
func (k MasterKey) LogValue() slog.Value { return slog.StringValue(k.String()) }

// Equal compares two keys in constant time.
func (k *MasterKey) Equal(o *MasterKey) bool {
	if k == nil || o == nil || k.key == nil || o.key == nil {
		return false
	}
	return subtle.ConstantTimeCompare(k.bytes(), o.bytes()) == 1
}

// sealed is a value encrypted under its own data key, which is itself
// wrapped by the master key. Both nonces are stored in front of their
// ciphertexts.
type sealed struct {
	KeyID      string `json:"kid"`
	WrappedKey []byte `json:"wk"`
	Ciphertext []byte `json:"ct"`
}

// seal encrypts plaintext under a fresh data key bound to ad.
func (k *MasterKey) seal(plaintext, ad []byte) (*sealed, error) {
	var dek [chacha20poly1305.KeySize]byte
	rand.Read(dek[:])
	defer clear(dek[:])
	ct, err := aeadSeal(dek[:], plaintext, ad)
	if err != nil {
		return nil, err
	}
	wk, err := aeadSeal(k.bytes(), dek[:], wrapAD(ad))
	if err != nil {
		return nil, err
	}
	return &sealed{KeyID: k.id, WrappedKey: wk, Ciphertext: ct}, nil
}

// open decrypts s, which must have been sealed with the same ad.
func (k *MasterKey) open(s *sealed, ad []byte) ([]byte, error) {
	if s.KeyID != k.id {
		return nil, fmt.Errorf("%w: value is wrapped by key %s, this key is %s", ErrWrongMasterKey, s.KeyID, k.id)
	}
	dek, err := aeadOpen(k.bytes(), s.WrappedKey, wrapAD(ad))
	if err != nil {
		return nil, ErrDecrypt
	}
	defer clear(dek)
	pt, err := aeadOpen(dek, s.Ciphertext, ad)
	if err != nil {
		return nil, ErrDecrypt
	}
	return pt, nil
}

// rewrap moves s under the key to without opening its ciphertext.
func (k *MasterKey) rewrap(s *sealed, ad []byte, to *MasterKey) (*sealed, error) {
	if s.KeyID != k.id {
		return nil, fmt.Errorf("%w: value is wrapped by key %s, this key is %s", ErrWrongMasterKey, s.KeyID, k.id)
	}
	dek, err := aeadOpen(k.bytes(), s.WrappedKey, wrapAD(ad))
	if err != nil {
		return nil, ErrDecrypt
	}
	defer clear(dek)
	wk, err := aeadSeal(to.bytes(), dek, wrapAD(ad))
	if err != nil {
		return nil, err
	}
	return &sealed{KeyID: to.id, WrappedKey: wk, Ciphertext: s.Ciphertext}, nil
}

func wrapAD(ad []byte) []byte {
	return append([]byte("egressd/dek/v1\x00"), ad...)
}

// valueAD binds a sealed value to its tenant, secret, version and field, so a
// row copied to another record fails to open.
func valueAD(tenantID, secretID string, version int, field string) []byte {
	return fmt.Appendf(nil, "egressd/value/v1\x00%s\x00%s\x00%d\x00%s", tenantID, secretID, version, field)
}

func aeadSeal(key, plaintext, ad []byte) ([]byte, error) {
	a, err := chacha20poly1305.NewX(key)
	if err != nil {
		return nil, err
	}
	out := make([]byte, a.NonceSize(), a.NonceSize()+len(plaintext)+a.Overhead())
	rand.Read(out)
	return a.Seal(out, out[:a.NonceSize()], plaintext, ad), nil
}

func aeadOpen(key, box, ad []byte) ([]byte, error) {
	a, err := chacha20poly1305.NewX(key)
	if err != nil {
		return nil, err
	}
	if len(box) < a.NonceSize()+a.Overhead() {
		return nil, ErrDecrypt
	}
	return a.Open(nil, box[:a.NonceSize()], box[a.NonceSize():], ad)
}
