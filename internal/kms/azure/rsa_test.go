package azure

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"testing"

	"github.com/kseal/kseal/internal/kms"
)

// What allowRsaKeys is about: with an RSA KEK, the public key alone makes
// EDEKs kseal unwraps, so whoever holds it can mint records kseal delivers
// as genuine. With allowRsaKeys false, RSA keys are refused for new DEKs
// and RSA EDEKs are refused without asking the vault; AES keys still work.
func TestAllowRSAKeys(t *testing.T) {
	f := newFakeVault(t)
	ctx := context.Background()
	k := openFake(t, f, nil)
	createKey(t, k, "KEK-rsa", "RSA", 2048)
	createKey(t, k, "KEK-aes", "oct-HSM", 256)
	rsaRef := kms.KEKRef{Name: "KEK-rsa", ID: "KEK-rsa"}
	genuine, err := k.GenerateDEK(ctx, rsaRef)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := parseEDEK(genuine.EDEK)

	// A forger with the public key only.
	f.Mu.Lock()
	pub := f.Keys["KEK-rsa"].Versions[0].RSA.PublicKey
	f.Mu.Unlock()
	chosen := bytes.Repeat([]byte{0x42}, dekSize)
	wrapped, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, &pub, chosen, nil)
	if err != nil {
		t.Fatal(err)
	}
	forged := appendEDEK(nil, "KEK-rsa", p.version, algRSAOAEP256, wrapped)
	if got, err := k.DecryptDEK(ctx, forged); err != nil || !bytes.Equal(got, chosen) {
		t.Fatalf("default (allowRsaKeys true): forged EDEK: %v; the documented risk no longer holds?", err)
	}

	strict := openFake(t, f, func(c *Config) { c.AllowRSAKeys = false })
	f.ResetRecorded()
	for name, edek := range map[string][]byte{"genuine": genuine.EDEK, "forged": forged} {
		_, err := strict.DecryptDEK(ctx, edek)
		if err == nil || errors.Is(err, kms.ErrKeyNotFound) || errors.Is(err, kms.ErrUnavailable) {
			t.Errorf("allowRsaKeys false, %s RSA EDEK: %v, want a plain refusal", name, err)
		}
	}
	if n := len(f.Recorded()); n != 0 {
		t.Errorf("%d requests for refused RSA EDEKs", n)
	}
	if _, err := strict.GenerateDEK(ctx, rsaRef); err == nil || errors.Is(err, kms.ErrUnavailable) {
		t.Errorf("allowRsaKeys false, GenerateDEK with an RSA key: %v, want a plain refusal", err)
	}
	if _, err := strict.ResolveKEK(ctx, "KEK-rsa"); err == nil || errors.Is(err, kms.ErrKeyNotFound) {
		t.Errorf("allowRsaKeys false, ResolveKEK of an RSA key: %v, want a plain refusal", err)
	}
	aes, err := strict.GenerateDEK(ctx, kms.KEKRef{Name: "KEK-aes", ID: "KEK-aes"})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := strict.DecryptDEK(ctx, aes.EDEK); err != nil || !bytes.Equal(got, aes.Key) {
		t.Fatalf("allowRsaKeys false, AES key: %v", err)
	}
	if !NewConfig().AllowRSAKeys {
		t.Error("allowRsaKeys defaults to false; Key Vault Standard/Premium users would have no usable key")
	}
}
