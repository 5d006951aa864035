// Package aws is kseal's AWS KMS provider, registered as KMS type "aws".
// KEKs are symmetric KMS keys found through aliases ("KEK-orders" becomes
// "alias/KEK-orders"); DEKs come from GenerateDataKey and are unwrapped with
// Decrypt, both under a fixed encryption context (EncryptionContext) that
// key policies can require. Rotation is AWS's: the key id stays, old
// ciphertexts keep decrypting.
//
// Each call makes exactly one attempt within Config.Timeout: retries,
// backoff and caching belong to the caller (internal/dek). Errors wrap
// kms.ErrKeyNotFound (missing keys or aliases, and for Decrypt disabled or
// pending-deletion keys too), kms.ErrKeyUnusable (ResolveKEK and
// GenerateDEK on a disabled or pending-deletion key) or kms.ErrUnavailable
// (throttling, 5xx, network, timeouts) or kms.ErrAccessDenied
// (AccessDenied, refused credentials); anything else, such as
// InvalidCiphertext, is a plain error.
//
// This package must never log, print or put into an error a data key,
// a secret access key or a session token.
package aws

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials/endpointcreds"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/smithy-go"

	"github.com/kseal/kseal/internal/kms"
)

// EncryptionContext is sent with every GenerateDataKey and Decrypt. AWS
// binds it to the CiphertextBlob (Decrypt fails without it) and logs it in
// CloudTrail; a key policy can demand it with the condition key
// kms:EncryptionContext:kseal, so the key serves kseal's data keys only.
var EncryptionContext = map[string]string{"kseal": "dek"}

// KMS talks to AWS KMS. It is safe for concurrent use.
type KMS struct {
	client      *awskms.Client
	aliasPrefix string
	timeout     time.Duration
	logger      *slog.Logger
	region      string          // the client's region
	accounts    map[string]bool // accounts whose key ARNs EDEKs may name (checkKey)
	regions     map[string]bool // allowedRegions: other regions whose multi-Region key ARNs EDEKs may name
}

var _ kms.KMS = (*KMS)(nil)
var _ kms.Prober = (*KMS)(nil)

// New builds a KMS client from cfg. It reads static credential files but
// makes no network call: a KMS that is down at startup fails the first
// request, which the caller retries.
func New(ctx context.Context, cfg *Config, logger *slog.Logger) (*KMS, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("aws kms config: %w", err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	opts, err := cfg.Credentials.loadOptions()
	if err != nil {
		return nil, fmt.Errorf("aws kms: %w", err)
	}
	if cfg.Region != "" {
		opts = append(opts, config.WithRegion(cfg.Region))
	}
	// Every SDK client built from this config (KMS, STS, SSO, instance
	// metadata) and the container credentials endpoint, which otherwise
	// makes its own, refuse redirects to another origin.
	hc := httpClient()
	opts = append(opts, config.WithHTTPClient(hc),
		config.WithEndpointCredentialOptions(func(o *endpointcreds.Options) { o.HTTPClient = hc }))
	awscfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("aws kms: load AWS config: %w", err)
	}
	if awscfg.Region == "" {
		return nil, errors.New("aws kms: region: not set, and neither AWS_REGION nor the shared config profile names one")
	}
	client := awskms.NewFromConfig(awscfg, func(o *awskms.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = awssdk.String(cfg.Endpoint)
		}
		// One attempt: internal/dek retries with jittered backoff and
		// knows what else is waiting; a second retry loop would multiply
		// the calls a struggling KMS gets.
		o.Retryer = awssdk.NopRetryer{}
	})
	logger.Info("aws kms: client ready", "region", awscfg.Region, "endpoint", cfg.Endpoint,
		"credentials", cfg.Credentials.Source, "aliasPrefix", cfg.AliasPrefix)
	return &KMS{client: client, aliasPrefix: cfg.AliasPrefix, timeout: cfg.Timeout, logger: logger,
		region: awscfg.Region, accounts: allowedAccounts(cfg), regions: allowedRegions(cfg)}, nil
}

// ResolveKEK looks the key up with DescribeKey under AliasPrefix+name and
// returns its key id (its key ARN when keys are addressed by ARN, since a
// bare id names a key in this account and region only). A missing alias or
// key wraps kms.ErrKeyNotFound; a key that is disabled, pending deletion or
// pending import wraps kms.ErrKeyUnusable; one whose custom key store is
// disconnected (Unavailable), or that is being created or updated,
// kms.ErrUnavailable; a key that cannot encrypt (asymmetric, HMAC) is a
// plain error.
func (k *KMS) ResolveKEK(ctx context.Context, name string) (kms.KEKRef, error) {
	ident := k.aliasPrefix + name
	if err := checkIdent(ident); err != nil {
		return kms.KEKRef{}, fmt.Errorf("aws kms: KEK %q: %w", name, err)
	}
	ctx, cancel := context.WithTimeout(ctx, k.timeout)
	defer cancel()
	out, err := k.client.DescribeKey(ctx, &awskms.DescribeKeyInput{KeyId: awssdk.String(ident)})
	if err != nil {
		return kms.KEKRef{}, classify("DescribeKey", ident, err)
	}
	md := out.KeyMetadata
	if md == nil || md.KeyId == nil || md.Arn == nil {
		return kms.KEKRef{}, fmt.Errorf("aws kms: DescribeKey %s: response without key metadata", ident)
	}
	switch md.KeyState {
	case types.KeyStateEnabled:
	case types.KeyStateDisabled, types.KeyStatePendingDeletion, types.KeyStatePendingReplicaDeletion, types.KeyStatePendingImport:
		// The key exists: its topics must be refused, not sent down the
		// unresolvedKeyPolicy.
		return kms.KEKRef{}, fmt.Errorf("aws kms: %s (key %s) is %s: %w", ident, *md.KeyId, md.KeyState, kms.ErrKeyUnusable)
	default: // Creating, Updating, Unavailable (custom key store disconnected)
		return kms.KEKRef{}, fmt.Errorf("aws kms: %s (key %s) is %s: %w", ident, *md.KeyId, md.KeyState, kms.ErrUnavailable)
	}
	// A SYMMETRIC_DEFAULT key can only be an ENCRYPT_DECRYPT key; an
	// empty usage (moto leaves it out) is taken as that.
	if md.KeySpec != types.KeySpecSymmetricDefault || md.KeyUsage != "" && md.KeyUsage != types.KeyUsageTypeEncryptDecrypt {
		return kms.KEKRef{}, fmt.Errorf("aws kms: %s (key %s) is a %s key for %s; KEKs must be SYMMETRIC_DEFAULT encryption keys", ident, *md.KeyId, md.KeySpec, md.KeyUsage)
	}
	id := *md.KeyId
	if strings.HasPrefix(ident, "arn:") {
		id = *md.Arn
	}
	if _, err := appendKeyID(nil, id); err != nil {
		return kms.KEKRef{}, err
	}
	if _, err := k.checkKey(id); err != nil { // never write EDEKs DecryptDEK refuses
		return kms.KEKRef{}, err
	}
	return kms.KEKRef{Name: name, ID: id}, nil
}

// checkIdent refuses names that cannot be an alias before asking AWS: a
// topic name with a dot makes no valid alias, so no key can exist for it.
func checkIdent(ident string) error {
	alias := ident
	if i := strings.Index(ident, ":alias/"); strings.HasPrefix(ident, "arn:") && i >= 0 {
		alias = ident[i+1:]
	}
	if !strings.HasPrefix(alias, "alias/") {
		if !validKeyID(ident) {
			return fmt.Errorf("not a valid key identifier: %w", kms.ErrKeyNotFound)
		}
		return nil
	}
	n := alias[len("alias/"):]
	if n == "" || len(alias) > 256 {
		return fmt.Errorf("%q is not a valid alias name: %w", alias, kms.ErrKeyNotFound)
	}
	for i := 0; i < len(n); i++ {
		if c := n[i]; !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '/' || c == '_' || c == '-') {
			return fmt.Errorf("%q is not a valid alias name (letters, digits, / _ - only): %w", alias, kms.ErrKeyNotFound)
		}
	}
	return nil
}

// GenerateDEK asks for a 256-bit data key under the key ResolveKEK found.
func (k *KMS) GenerateDEK(ctx context.Context, ref kms.KEKRef) (kms.DEK, error) {
	edek, err := appendKeyID(make([]byte, 0, 1+compactIDLen+200), ref.ID)
	if err != nil {
		return kms.DEK{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, k.timeout)
	defer cancel()
	out, err := k.client.GenerateDataKey(ctx, &awskms.GenerateDataKeyInput{
		KeyId:             awssdk.String(ref.ID),
		KeySpec:           types.DataKeySpecAes256,
		EncryptionContext: EncryptionContext,
	})
	if err != nil {
		return kms.DEK{}, classify("GenerateDataKey", ref.ID, err)
	}
	if len(out.Plaintext) != dekSize {
		clear(out.Plaintext)
		return kms.DEK{}, fmt.Errorf("aws kms: GenerateDataKey %s: data key is %d bytes, want %d", ref.ID, len(out.Plaintext), dekSize)
	}
	if n := len(out.CiphertextBlob); n == 0 || n > maxBlobLen {
		clear(out.Plaintext)
		return kms.DEK{}, fmt.Errorf("aws kms: GenerateDataKey %s: CiphertextBlob is %d bytes", ref.ID, n)
	}
	// The EDEK will pin Decrypt to ref.ID: a blob made by another key
	// would never decrypt, so refuse it now rather than lose the data.
	if got := awssdk.ToString(out.KeyId); !sameKey(got, ref.ID) {
		clear(out.Plaintext)
		return kms.DEK{}, fmt.Errorf("aws kms: GenerateDataKey %s: answered for key %q", ref.ID, got)
	}
	return kms.DEK{Key: out.Plaintext, EDEK: append(edek, out.CiphertextBlob...)}, nil
}

// sameKey reports whether the key ARN a response names is the key id or
// ARN we asked for.
func sameKey(arn, id string) bool {
	return arn == id || strings.HasSuffix(arn, ":key/"+id)
}

// DecryptDEK unwraps an EDEK with Decrypt, naming the key the EDEK records
// (so AWS checks the blob is that key's), and only for keys checkKey
// allows.
func (k *KMS) DecryptDEK(ctx context.Context, edek []byte) ([]byte, error) {
	keyID, blob, err := parseEDEK(edek)
	if err != nil {
		return nil, err
	}
	useID, err := k.checkKey(keyID)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, k.timeout)
	defer cancel()
	out, err := k.client.Decrypt(ctx, &awskms.DecryptInput{
		KeyId:               awssdk.String(useID),
		CiphertextBlob:      blob,
		EncryptionContext:   EncryptionContext,
		EncryptionAlgorithm: types.EncryptionAlgorithmSpecSymmetricDefault,
	})
	if err != nil {
		return nil, classify("Decrypt", useID, err)
	}
	if len(out.Plaintext) != dekSize {
		clear(out.Plaintext)
		return nil, fmt.Errorf("aws kms: Decrypt %s: data key is %d bytes, want %d", keyID, len(out.Plaintext), dekSize)
	}
	return out.Plaintext, nil
}

// Probe describes the alias "alias/"+kms.ProbeKEK in the client's region,
// which need not exist: NotFoundException means AWS KMS answered and took
// kseal's credentials, and so does AccessDeniedException (the request was
// authenticated, then this alias refused). Throttling, 5xx, network
// failures and refused credentials (unknown access key, bad signature,
// expired token) are errors.
func (k *KMS) Probe(ctx context.Context) error {
	ident := "alias/" + kms.ProbeKEK
	ctx, cancel := context.WithTimeout(ctx, k.timeout)
	defer cancel()
	_, err := k.client.DescribeKey(ctx, &awskms.DescribeKeyInput{KeyId: awssdk.String(ident)})
	var notFound *types.NotFoundException
	var apiErr smithy.APIError
	switch {
	case err == nil, errors.As(err, &notFound):
		return nil
	case errors.As(err, &apiErr) && apiErr.ErrorCode() == "AccessDeniedException":
		return nil
	}
	return classify("DescribeKey (readiness probe)", ident, err)
}

// DescribeEDEK reads the key id from an EDEK; AWS does not say which
// version of the key material made a blob, so Version is empty.
func (k *KMS) DescribeEDEK(edek []byte) (kms.EDEKInfo, error) {
	return DescribeEDEK(edek)
}

// DescribeEDEK reads the key id from an EDEK without a client, for
// inspection tools.
func DescribeEDEK(edek []byte) (kms.EDEKInfo, error) {
	keyID, _, err := parseEDEK(edek)
	if err != nil {
		return kms.EDEKInfo{}, err
	}
	return kms.EDEKInfo{KEK: keyID}, nil
}

// retryables is the SDK's own idea of a transient failure: connection
// errors, 500/502/503/504, throttling codes, request timeouts.
var retryables = retry.IsErrorRetryables(retry.DefaultRetryables)

// awsDenied are the error codes of a refused caller: its permissions, or
// its credentials.
var awsDenied = map[string]bool{
	"AccessDeniedException":       true,
	"UnrecognizedClientException": true,
	"InvalidSignatureException":   true,
	"ExpiredTokenException":       true,
}

// classify wraps an SDK error for op on key: missing keys in
// kms.ErrKeyNotFound, disabled or pending-deletion ones in
// kms.ErrKeyUnusable (kms.ErrKeyNotFound for Decrypt), transient failures in kms.ErrUnavailable,
// refused callers (AccessDenied, bad or expired credentials) in
// kms.ErrAccessDenied, the rest (InvalidCiphertext, IncorrectKey,
// validation) as they are.
func classify(op, key string, err error) error {
	var (
		notFound    *types.NotFoundException
		disabled    *types.DisabledException
		badState    *types.KMSInvalidStateException
		internal    *types.KMSInternalException
		depTimeout  *types.DependencyTimeoutException
		unavailable *types.KeyUnavailableException
		resp        *awshttp.ResponseError
		apiErr      smithy.APIError
	)
	sentinel := error(nil)
	switch {
	case errors.Is(err, kms.ErrRedirectRefused):
		// A plain refusal: retrying cannot change where the answer points.
	case errors.As(err, &notFound):
		sentinel = kms.ErrKeyNotFound
	case errors.As(err, &disabled), errors.As(err, &badState):
		// The key exists but cannot be used. For making data keys that is
		// a refusal (never "no KEK"); for Decrypt it reads like a missing
		// key (RESOURCE_NOT_FOUND to the consumer).
		sentinel = kms.ErrKeyUnusable
		if op == "Decrypt" {
			sentinel = kms.ErrKeyNotFound
		}
	case errors.As(err, &internal), errors.As(err, &depTimeout), errors.As(err, &unavailable),
		errors.Is(err, context.DeadlineExceeded):
		sentinel = kms.ErrUnavailable
	case errors.As(err, &apiErr) && awsDenied[apiErr.ErrorCode()]:
		sentinel = kms.ErrAccessDenied
	case errors.Is(err, context.Canceled):
		// The caller gave up; internal/dek treats that as transient itself.
	case retryables.IsErrorRetryable(err) == awssdk.TrueTernary:
		sentinel = kms.ErrUnavailable
	case errors.As(err, &resp) && (resp.HTTPStatusCode() >= 500 || resp.HTTPStatusCode() == 429):
		sentinel = kms.ErrUnavailable
	case errors.As(err, &apiErr) && apiErr.ErrorFault() == smithy.FaultServer:
		sentinel = kms.ErrUnavailable
	}
	if sentinel == nil {
		return fmt.Errorf("aws kms: %s %s: %w", op, key, err)
	}
	return fmt.Errorf("aws kms: %s %s: %w: %w", op, key, sentinel, err)
}
