//go:build integration

package kmip

import (
	"context"
	"errors"

	"github.com/kseal/kseal/internal/kms/kmip/ttlv"
)

// Administration the provider never does: make, activate, revoke and
// destroy keys with kseal's own client. This file is built only with the
// integration tag, for the provider's real-server tests and the end-to-end
// suite in test/integration; kseal itself never manages KMIP keys.

// CreateKey creates a 256-bit AES key for Encrypt and Decrypt with the
// Name attribute name (Pre-Active) and returns its Unique Identifier.
func (k *KMS) CreateKey(ctx context.Context, name string) (string, error) {
	p, err := k.c.do(ctx, opCreate, ttlv.Struct(0,
		ttlv.Enum(tagObjectType, objectSymmetricKey),
		ttlv.Struct(tagTemplateAttribute,
			attr("Cryptographic Algorithm", ttlv.Enum(0, algAES)),
			attr("Cryptographic Length", ttlv.Int(0, 256)),
			attr("Cryptographic Usage Mask", ttlv.Int(0, usageEncrypt|usageDecrypt)),
			nameAttr(name))))
	if err != nil {
		return "", err
	}
	var id *ttlv.Item
	if p != nil {
		id = p.Find(tagUniqueIdentifier)
	}
	if id == nil {
		return "", errors.New("kmip kms: Create returned no Unique Identifier")
	}
	return id.Text(), nil
}

// Activate makes a Pre-Active key Active.
func (k *KMS) Activate(ctx context.Context, id string) error {
	_, err := k.c.do(ctx, opActivate, ttlv.Struct(0, ttlv.Text(tagUniqueIdentifier, id)))
	return err
}

// Revoke revokes with reason Cessation of Operation (the key becomes
// Deactivated) or, with compromised, Key Compromise.
func (k *KMS) Revoke(ctx context.Context, id string, compromised bool) error {
	reason := ttlv.Struct(tagRevocationReason, ttlv.Enum(tagRevocationReasonCode, 6))
	items := []ttlv.Item{ttlv.Text(tagUniqueIdentifier, id), reason}
	if compromised {
		items[1] = ttlv.Struct(tagRevocationReason, ttlv.Enum(tagRevocationReasonCode, 2))
		items = append(items, ttlv.DateTimeItem(tagCompromiseOccurrenceDate, 1))
	}
	_, err := k.c.do(ctx, opRevoke, ttlv.Struct(0, items...))
	return err
}

// Destroy destroys a key that is not Active.
func (k *KMS) Destroy(ctx context.Context, id string) error {
	_, err := k.c.do(ctx, opDestroy, ttlv.Struct(0, ttlv.Text(tagUniqueIdentifier, id)))
	return err
}
