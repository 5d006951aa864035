package app

import (
	"context"
	"crypto/cipher"

	"github.com/kseal/kseal/internal/dek"
	"github.com/kseal/kseal/internal/kms"
	"github.com/kseal/kseal/internal/recordcrypt"
)

// keys adapts a dek.Manager (and its KMS, for offline EDEK descriptions in
// log lines) to encrypt.Keys.
type keys struct {
	mgr    *dek.Manager
	kms    kms.KMS
	health *kmsHealth // readiness of kms
}

func (k keys) Resolve(ctx context.Context, name string) (kms.KEKRef, error) {
	return k.mgr.Resolve(ctx, name)
}

func (k keys) Current(ctx context.Context, kek kms.KEKRef) (recordcrypt.Key, error) {
	key, err := k.mgr.Current(ctx, kek)
	if err != nil {
		return nil, err
	}
	return key, nil
}

func (k keys) Decryptor(ctx context.Context, edek []byte) (cipher.AEAD, error) {
	return k.mgr.Decryptor(ctx, edek)
}

func (k keys) DescribeEDEK(edek []byte) (kms.EDEKInfo, error) { return k.kms.DescribeEDEK(edek) }
