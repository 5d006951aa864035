package kmip

import (
	"fmt"

	"github.com/kseal/kseal/internal/kms/kmip/ttlv"
)

// KMIP 1.x tags, operations and enumerations kseal uses (KMIP 1.4
// specification, sections 9.1.3.1 and 9.1.3.2).
const (
	tagActivationDate             ttlv.Tag = 0x420001
	tagAttribute                  ttlv.Tag = 0x420008
	tagAttributeName              ttlv.Tag = 0x42000A
	tagAttributeValue             ttlv.Tag = 0x42000B
	tagBatchCount                 ttlv.Tag = 0x42000D
	tagBatchItem                  ttlv.Tag = 0x42000F
	tagBlockCipherMode            ttlv.Tag = 0x420011
	tagCryptographicAlgorithm     ttlv.Tag = 0x420028
	tagCryptographicLength        ttlv.Tag = 0x42002A
	tagCryptographicParameters    ttlv.Tag = 0x42002B
	tagCryptographicUsageMask     ttlv.Tag = 0x42002C
	tagIVCounterNonce             ttlv.Tag = 0x42003D
	tagMaximumItems               ttlv.Tag = 0x42004F
	tagMaximumResponseSize        ttlv.Tag = 0x420050
	tagName                       ttlv.Tag = 0x420053
	tagNameType                   ttlv.Tag = 0x420054
	tagNameValue                  ttlv.Tag = 0x420055
	tagObjectType                 ttlv.Tag = 0x420057
	tagOperation                  ttlv.Tag = 0x42005C
	tagPaddingMethod              ttlv.Tag = 0x42005F
	tagProtocolVersion            ttlv.Tag = 0x420069
	tagProtocolVersionMajor       ttlv.Tag = 0x42006A
	tagProtocolVersionMinor       ttlv.Tag = 0x42006B
	tagRequestHeader              ttlv.Tag = 0x420077
	tagRequestMessage             ttlv.Tag = 0x420078
	tagRequestPayload             ttlv.Tag = 0x420079
	tagResponseHeader             ttlv.Tag = 0x42007A
	tagResponseMessage            ttlv.Tag = 0x42007B
	tagResponsePayload            ttlv.Tag = 0x42007C
	tagResultMessage              ttlv.Tag = 0x42007D
	tagResultReason               ttlv.Tag = 0x42007E
	tagResultStatus               ttlv.Tag = 0x42007F
	tagRevocationReason           ttlv.Tag = 0x420081
	tagRevocationReasonCode       ttlv.Tag = 0x420082
	tagState                      ttlv.Tag = 0x42008D
	tagTemplateAttribute          ttlv.Tag = 0x420091
	tagUniqueIdentifier           ttlv.Tag = 0x420094
	tagData                       ttlv.Tag = 0x4200C2
	tagRandomIV                   ttlv.Tag = 0x4200C5
	tagTagLength                  ttlv.Tag = 0x4200CE
	tagAuthenticatedEncryptionTag ttlv.Tag = 0x4200FF
	tagCompromiseOccurrenceDate   ttlv.Tag = 0x420021
)

// Operations.
const (
	opCreate        = 0x01
	opLocate        = 0x08
	opGetAttributes = 0x0B
	opActivate      = 0x12
	opRevoke        = 0x13
	opDestroy       = 0x14
	opEncrypt       = 0x1F
	opDecrypt       = 0x20
)

// Result status and reasons.
const (
	statusSuccess = 0

	reasonItemNotFound          = 0x01
	reasonAuthentication        = 0x03
	reasonOperationNotSupported = 0x05
	reasonPermissionDenied      = 0x0C
	reasonGeneralFailure        = 0x100
)

// Enumerations.
const (
	objectSymmetricKey = 0x02
	algAES             = 0x03
	modeCBC            = 0x01
	modeGCM            = 0x09
	paddingPKCS5       = 0x03
	nameTypeText       = 0x01
	usageEncrypt       = 0x04
	usageDecrypt       = 0x08

	statePreActive            = 1
	stateActive               = 2
	stateDeactivated          = 3
	stateCompromised          = 4
	stateDestroyed            = 5
	stateDestroyedCompromised = 6
)

func stateName(s int64) string {
	switch s {
	case statePreActive:
		return "Pre-Active"
	case stateActive:
		return "Active"
	case stateDeactivated:
		return "Deactivated"
	case stateCompromised:
		return "Compromised"
	case stateDestroyed:
		return "Destroyed"
	case stateDestroyedCompromised:
		return "Destroyed Compromised"
	}
	return "unknown"
}

func reasonName(r int64) string {
	switch r {
	case 0x01:
		return "Item Not Found"
	case 0x02:
		return "Response Too Large"
	case 0x03:
		return "Authentication Not Successful"
	case 0x04:
		return "Invalid Message"
	case 0x05:
		return "Operation Not Supported"
	case 0x06:
		return "Missing Data"
	case 0x07:
		return "Invalid Field"
	case 0x08:
		return "Feature Not Supported"
	case 0x0A:
		return "Cryptographic Failure"
	case 0x0B:
		return "Illegal Operation"
	case 0x0C:
		return "Permission Denied"
	case 0x0D:
		return "Object Archived"
	case 0x100:
		return "General Failure"
	}
	return fmt.Sprintf("reason 0x%x", r)
}

// nameAttr is the Name attribute for a key name.
func nameAttr(name string) ttlv.Item {
	return ttlv.Struct(tagAttribute,
		ttlv.Text(tagAttributeName, "Name"),
		ttlv.Struct(tagAttributeValue,
			ttlv.Text(tagNameValue, name),
			ttlv.Enum(tagNameType, nameTypeText)))
}

func attr(name string, value ttlv.Item) ttlv.Item {
	value.Tag = tagAttributeValue
	return ttlv.Struct(tagAttribute, ttlv.Text(tagAttributeName, name), value)
}
