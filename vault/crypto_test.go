package vault

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/egressd/egressd/vault/storage"
)

func TestSealOpenRoundTrip(t *testing.T) {
	k := NewMasterKey()
	for _, pt := range [][]byte{{}, []byte("x"), []byte("sk-live-0123456789"), bytes.Repeat([]byte{0xff, 0}, MaxValueLen/2)} {
		ad := valueAD("ten_a", "sec_a", 3, "value")
		box, err := k.seal(pt, ad)
		if err != nil {
			t.Fatal(err)
		}
		if box.KeyID != k.ID() {
			t.Errorf("key id %q, want %q", box.KeyID, k.ID())
		}
		if len(pt) > 4 && bytes.Contains(box.Ciphertext, pt) {
			t.Errorf("ciphertext holds the plaintext")
		}
		got, err := k.open(box, ad)
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		if !bytes.Equal(got, pt) {
			t.Fatalf("round trip of %d bytes changed the value", len(pt))
		}
	}
}

func TestSealIsRandomized(t *testing.T) {
	k := NewMasterKey()
	ad := valueAD("t", "s", 1, "value")
	a, _ := k.seal([]byte("same"), ad)
	b, _ := k.seal([]byte("same"), ad)
	if bytes.Equal(a.Ciphertext, b.Ciphertext) || bytes.Equal(a.WrappedKey, b.WrappedKey) {
		t.Fatal("two seals of one plaintext are equal: nonce or data key reused")
	}
}

func TestOpenRefusesOtherBinding(t *testing.T) {
	k := NewMasterKey()
	box, err := k.seal([]byte("v"), valueAD("ten_a", "sec_a", 1, "value"))
	if err != nil {
		t.Fatal(err)
	}
	for name, ad := range map[string][]byte{
		"tenant":  valueAD("ten_b", "sec_a", 1, "value"),
		"secret":  valueAD("ten_a", "sec_b", 1, "value"),
		"version": valueAD("ten_a", "sec_a", 2, "value"),
		"field":   valueAD("ten_a", "sec_a", 1, "refresh_token"),
		// The separators keep ("ab","c") and ("a","bc") apart.
		"shifted": valueAD("ten_", "asec_a", 1, "value"),
	} {
		if _, err := k.open(box, ad); !errors.Is(err, ErrDecrypt) {
			t.Errorf("%s: open = %v, want ErrDecrypt", name, err)
		}
	}
	other := NewMasterKey()
	if _, err := other.open(box, valueAD("ten_a", "sec_a", 1, "value")); !errors.Is(err, ErrWrongMasterKey) {
		t.Errorf("other key: %v, want ErrWrongMasterKey", err)
	}
	// Same key id claimed, but another key: the wrap fails to open.
	forged := *box
	forged.KeyID = other.ID()
	if _, err := other.open(&forged, valueAD("ten_a", "sec_a", 1, "value")); !errors.Is(err, ErrDecrypt) {
		t.Errorf("forged key id: %v, want ErrDecrypt", err)
	}
	for i := range []int{0, len(box.Ciphertext) - 1} {
		bad := *box
		bad.Ciphertext = bytes.Clone(box.Ciphertext)
		bad.Ciphertext[i] ^= 1
		if _, err := k.open(&bad, valueAD("ten_a", "sec_a", 1, "value")); !errors.Is(err, ErrDecrypt) {
			t.Errorf("flipped byte %d: %v, want ErrDecrypt", i, err)
		}
	}
	short := *box
	short.Ciphertext = box.Ciphertext[:10]
	if _, err := k.open(&short, valueAD("ten_a", "sec_a", 1, "value")); !errors.Is(err, ErrDecrypt) {
		t.Errorf("truncated: %v, want ErrDecrypt", err)
	}
}

// editRow rewrites the stored row of a secret inside one transaction.
func editRow(t *testing.T, s *Store, bucketKey []byte, fn func(row map[string]json.RawMessage)) {
	t.Helper()
	err := s.backend.Update(func(tx storage.Tx) error {
		b := tx.Bucket(bSecrets)
		var row map[string]json.RawMessage
		if err := json.Unmarshal(b.Get(bucketKey), &row); err != nil {
			return err
		}
		fn(row)
		raw, err := json.Marshal(row)
		if err != nil {
			return err
		}
		return b.Put(bucketKey, raw)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func rowField(t *testing.T, s *Store, bucketKey []byte, field string) json.RawMessage {
	t.Helper()
	var row map[string]json.RawMessage
	if err := json.Unmarshal(rawRow(t, s, bSecrets, bucketKey), &row); err != nil {
		t.Fatal(err)
	}
	return row[field]
}

// A sealed value copied in the file to another secret, tenant, version or
// field fails to open: the associated data binds it to its place.
func TestCopiedRowFailsToOpen(t *testing.T) {
	s := openTest(t)
	ta := mustTenant(t, s, "a")
	tb := mustTenant(t, s, "b")
	a := mustUpsert(t, s, ta.ID, SecretInput{Name: "a", Value: "value-of-a", Scope: ScopeTenant, RefreshToken: "refresh-of-a", AllowedHosts: []string{"api.example.com"}}).Secret
	b := mustUpsert(t, s, ta.ID, SecretInput{Name: "b", Value: "value-of-b", Scope: ScopeTenant, AllowedHosts: []string{"api.example.com"}}).Secret
	c := mustUpsert(t, s, tb.ID, SecretInput{Name: "c", Value: "value-of-c", Scope: ScopeTenant, AllowedHosts: []string{"api.example.com"}}).Secret
	aKey, bKey, cKey := key(ta.ID, a.ID), key(ta.ID, b.ID), key(tb.ID, c.ID)
	aValue := rowField(t, s, aKey, "value")

	t.Run("other secret", func(t *testing.T) {
		editRow(t, s, bKey, func(row map[string]json.RawMessage) { row["value"] = aValue })
		if _, _, _, err := openValue(s, ta.ID, b.ID); !errors.Is(err, ErrDecrypt) {
			t.Fatalf("open b with a's value: %v, want ErrDecrypt", err)
		}
	})
	t.Run("other tenant", func(t *testing.T) {
		editRow(t, s, cKey, func(row map[string]json.RawMessage) { row["value"] = aValue })
		if _, _, _, err := openValue(s, tb.ID, c.ID); !errors.Is(err, ErrDecrypt) {
			t.Fatalf("open c with a's value: %v, want ErrDecrypt", err)
		}
	})
	t.Run("whole row moved to other tenant", func(t *testing.T) {
		// The attacker also rewrites tenant_id so the row looks at home.
		err := s.backend.Update(func(tx storage.Tx) error {
			var row map[string]json.RawMessage
			if err := json.Unmarshal(tx.Bucket(bSecrets).Get(aKey), &row); err != nil {
				return err
			}
			row["tenant_id"], _ = json.Marshal(tb.ID)
			raw, _ := json.Marshal(row)
			return tx.Bucket(bSecrets).Put(key(tb.ID, a.ID), raw)
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, _, _, err := openValue(s, tb.ID, a.ID); !errors.Is(err, ErrDecrypt) {
			t.Fatalf("moved row: %v, want ErrDecrypt", err)
		}
		// The original still opens.
		if v := mustOpenValue(t, s, ta.ID, a.ID); v != "value-of-a" {
			t.Fatalf("original changed: %q", v)
		}
	})
	t.Run("old version", func(t *testing.T) {
		v1 := rowField(t, s, aKey, "value")
		if _, err := s.RotateSecret(ta.ID, a.ID, RotateInput{Value: "value-of-a-v2"}); err != nil {
			t.Fatal(err)
		}
		editRow(t, s, aKey, func(row map[string]json.RawMessage) { row["value"] = v1 })
		if _, _, _, err := openValue(s, ta.ID, a.ID); !errors.Is(err, ErrDecrypt) {
			t.Fatalf("v1 value in v2 row: %v, want ErrDecrypt", err)
		}
		// Rolling the version back with it is refused too: the AD names
		// version 1, but the current ciphertext was sealed for 2.
		if _, err := s.RotateSecret(ta.ID, a.ID, RotateInput{Value: "value-of-a-v3"}); err != nil {
			t.Fatal(err)
		}
		editRow(t, s, aKey, func(row map[string]json.RawMessage) { row["version"] = json.RawMessage("2") })
		if _, _, _, err := openValue(s, ta.ID, a.ID); !errors.Is(err, ErrDecrypt) {
			t.Fatalf("version edited: %v, want ErrDecrypt", err)
		}
	})
	t.Run("refresh token as value", func(t *testing.T) {
		d := mustUpsert(t, s, ta.ID, SecretInput{Name: "d", Value: "value-of-d", Scope: ScopeTenant, RefreshToken: "refresh-of-d", AllowedHosts: []string{"api.example.com"}}).Secret
		dKey := key(ta.ID, d.ID)
		editRow(t, s, dKey, func(row map[string]json.RawMessage) { row["value"] = row["refresh"] })
		if _, _, _, err := openValue(s, ta.ID, d.ID); !errors.Is(err, ErrDecrypt) {
			t.Fatalf("refresh token in value field: %v, want ErrDecrypt", err)
		}
	})
	t.Run("no value", func(t *testing.T) {
		editRow(t, s, bKey, func(row map[string]json.RawMessage) { delete(row, "value") })
		if _, _, _, err := openValue(s, ta.ID, b.ID); !errors.Is(err, ErrDecrypt) {
			t.Fatalf("row without value: %v, want ErrDecrypt", err)
		}
	})
	t.Run("error names no value", func(t *testing.T) {
		_, _, _, err := openValue(s, tb.ID, c.ID)
		if err == nil || strings.Contains(err.Error(), "value-of") {
			t.Fatalf("error %v", err)
		}
	})
}

func TestParseMasterKey(t *testing.T) {
	raw := bytes.Repeat([]byte{0xA5}, MasterKeySize)
	raw[0], raw[31] = 0xfb, 0xff // base64 '+' '/' vs '-' '_' differ
	want, err := ParseMasterKey([]byte(base64.StdEncoding.EncodeToString(raw)))
	if err != nil {
		t.Fatal(err)
	}
	for name, text := range map[string]string{
		"std":           base64.StdEncoding.EncodeToString(raw),
		"std newline":   "  " + base64.StdEncoding.EncodeToString(raw) + "\n",
		"url padded":    base64.URLEncoding.EncodeToString(raw),
		"url raw":       base64.RawURLEncoding.EncodeToString(raw),
		"std raw":       base64.RawStdEncoding.EncodeToString(raw),
		"hex":           hex.EncodeToString(raw),
		"hex uppercase": strings.ToUpper(hex.EncodeToString(raw)) + "\r\n",
	} {
		k, err := ParseMasterKey([]byte(text))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if !k.Equal(want) || k.ID() != want.ID() {
			t.Errorf("%s: another key", name)
		}
	}
	for name, text := range map[string]string{
		"empty":      "",
		"short":      base64.StdEncoding.EncodeToString(raw[:31]),
		"long":       base64.StdEncoding.EncodeToString(append(raw, 1)),
		"bad hex":    strings.Repeat("zz", MasterKeySize),
		"hex 31":     hex.EncodeToString(raw[:31]),
		"garbage":    "not a key at all",
		"inner junk": base64.StdEncoding.EncodeToString(raw)[:20] + "!!" + base64.StdEncoding.EncodeToString(raw)[22:],
	} {
		k, err := ParseMasterKey([]byte(text))
		if !errors.Is(err, ErrBadMasterKey) {
			t.Errorf("%s: got %v, %v; want ErrBadMasterKey", name, k, err)
		}
		if err != nil && strings.Contains(err.Error(), text) && text != "" {
			t.Errorf("%s: error echoes the input: %v", name, err)
		}
	}
}

func TestMasterKeyFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "master.key")
	k, created, err := LoadOrCreateMasterKeyFile(path)
	if err != nil || !created {
		t.Fatalf("create: %v %v", created, err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	k2, created, err := LoadOrCreateMasterKeyFile(path)
	if err != nil || created || !k2.Equal(k) {
		t.Fatalf("second load: created=%v err=%v same=%v", created, err, err == nil && k2.Equal(k))
	}
	if err := WriteMasterKeyFile(path, NewMasterKey()); err == nil {
		t.Fatal("WriteMasterKeyFile replaced an existing key")
	}
	if k3, _ := LoadMasterKeyFile(path); !k3.Equal(k) {
		t.Fatal("the key file changed")
	}
	bad := filepath.Join(dir, "bad.key")
	os.WriteFile(bad, []byte("nope"), 0o600)
	if _, _, err := LoadOrCreateMasterKeyFile(bad); !errors.Is(err, ErrBadMasterKey) {
		t.Fatalf("bad file: %v, want ErrBadMasterKey", err)
	}
	if b, _ := os.ReadFile(bad); string(b) != "nope" {
		t.Fatal("a malformed key file was overwritten")
	}
}

// holder has the secret types in an unexported field: fmt reaches them
// without calling their methods.
type holder struct {
	v Value
	k *MasterKey
	m MasterKey
}

// Holder has them in exported fields.
type Holder struct {
	V Value
	K *MasterKey
	M MasterKey
}

func TestSecretTypesNeverPrint(t *testing.T) {
	const plain = "sk-live-SUPERSECRETVALUE"
	k := NewMasterKey()
	keyText := keyForms(k)
	v := NewValue([]byte(plain))
	pv := &v
	things := map[string]any{
		"Value": v, "*Value": pv, "*MasterKey": k, "MasterKey": *k,
		"holder": holder{v: v, k: k, m: *k}, "*holder": &holder{v: v, k: k, m: *k},
		"Holder": Holder{V: v, K: k, M: *k},
		"slice":  []Value{v}, "map": map[string]Value{"a": v},
		"SecretInput": SecretInput{Name: "n", Value: plain, RefreshToken: plain, AllowedHosts: []string{"api.example.com"}},
		"RotateInput": RotateInput{Value: plain, RefreshToken: plain},
	}
	verbs := []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%T %v"}
	check := func(how, out string) {
		t.Helper()
		if strings.Contains(out, plain) || strings.Contains(strings.ToLower(out), hex.EncodeToString([]byte(plain))) {
			t.Errorf("%s shows the value: %s", how, out)
		}
		for _, f := range keyText {
			if strings.Contains(out, f) {
				t.Errorf("%s shows the master key: %s", how, out)
			}
		}
		// Raw bytes as fmt prints a byte array or slice: "[115 107 ...]".
		if strings.Contains(out, fmt.Sprint([]byte(plain))) || strings.Contains(out, strings.Trim(fmt.Sprint(k.bytes()), "[]")) {
			t.Errorf("%s shows raw bytes: %s", how, out)
		}
	}
	for name, x := range things {
		for _, verb := range verbs {
			args := []any{x}
			if strings.Count(verb, "%") == 2 {
				args = append(args, x)
			}
			check(name+" "+verb, fmt.Sprintf(verb, args...))
		}
		var buf bytes.Buffer
		slog.New(slog.NewTextHandler(&buf, nil)).Info("m", "x", x)
		slog.New(slog.NewJSONHandler(&buf, nil)).Info("m", "x", x, slog.Any("y", x))
		check(name+" slog", buf.String())
		if name == "SecretInput" || name == "RotateInput" {
			// Input types are the wire format of the admin API; they
			// marshal their fields on purpose.
			continue
		}
		j, err := json.Marshal(x)
		if err != nil {
			t.Errorf("%s json: %v", name, err)
		}
		check(name+" json", string(j))
	}
	// And the value is still there for the one place that needs it.
	if string(v.Reveal()) != plain || !v.Equal([]byte(plain)) || v.Equal([]byte("other")) || v.Len() != len(plain) {
		t.Fatal("Value lost its content")
	}
	if !(Value{}).IsZero() || (Value{}).Reveal() != nil || v.IsZero() {
		t.Fatal("zero Value")
	}
}

// keyForms is every text form of a master key a leak could take.
func keyForms(k *MasterKey) []string {
	raw := k.bytes()
	return []string{
		base64.StdEncoding.EncodeToString(raw)[:40],
		base64.RawURLEncoding.EncodeToString(raw)[:40],
		hex.EncodeToString(raw),
		fmt.Sprintf("%X", raw),
		string(raw),
	}
}
