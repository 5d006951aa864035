package dek

import (
	"errors"
	"fmt"
	"time"

	"github.com/kseal/kseal/internal/kms"
)

// Defaults, matching what operators of Kroxylicious already tune against.
const (
	DefaultRefreshAfterWrite    = time.Hour
	DefaultExpireAfterWrite     = 2 * time.Hour
	DefaultMaxEncryptionsPerDEK = 5_000_000
	DefaultDecryptCacheSize     = 1000
	DefaultDecryptCacheTTL      = time.Hour
	DefaultDecryptCacheMaxAge   = 10 * time.Minute
	DefaultNotFoundTTL          = 30 * time.Second
	DefaultKEKRefreshAfter      = 8 * time.Minute
	DefaultKEKExpireAfter       = 10 * time.Minute
	DefaultKEKCacheSize         = 10_000
	// DefaultKEKCheckInterval bounds, with one KMS call, how long a KEK
	// that is deleted or disabled keeps sealing records (docs/threat-model.md).
	DefaultKEKCheckInterval = 30 * time.Second
	DefaultKMSTimeout       = 20 * time.Second
	DefaultKMSAttempts      = 3
	DefaultKMSBackoff       = 500 * time.Millisecond
	DefaultKMSBackoffMax    = 5 * time.Second

	// MinDecryptCacheMaxAge is the shortest DecryptCacheMaxAge: below it a
	// busy consumer would cost a KMS call per EDEK every few fetches.
	MinDecryptCacheMaxAge = time.Second

	// MaxEncryptionsCeiling is the most nonce counters one DEK may hand out:
	// NIST SP 800-38D limits a GCM key to 2^32 invocations.
	MaxEncryptionsCeiling = 1 << 32
)

// Options configure a Manager. Zero fields take the defaults above.
type Options struct {
	// RefreshAfterWrite is the age at which the active DEK of a KEK is
	// replaced in the background; it keeps serving until the new one is ready.
	RefreshAfterWrite time.Duration
	// ExpireAfterWrite is the age after which a DEK is no longer handed out
	// for encryption; callers then wait (bounded by their context) for a new one.
	ExpireAfterWrite time.Duration
	// MaxEncryptionsPerDEK caps the records one DEK seals (at most
	// MaxEncryptionsCeiling). A background refresh starts at 7/8 of it.
	MaxEncryptionsPerDEK uint64

	// DecryptCacheSize bounds the number of unwrapped DEKs kept for decryption.
	DecryptCacheSize int
	// DecryptCacheTTL drops an unwrapped DEK this long after its last use.
	DecryptCacheTTL time.Duration
	// DecryptCacheMaxAge drops an unwrapped DEK this long after the KMS
	// unwrapped it, however often it is used: the bound on how long a
	// deleted, disabled or no longer permitted KEK keeps decrypting. A DEK
	// in use is unwrapped again in the background from 7/8 of it. A
	// DecryptCacheTTL above it has no effect.
	DecryptCacheMaxAge time.Duration
	// NotFoundTTL is how long a KMS's "no such key" (or its refusal of an
	// EDEK) is remembered, on both the decrypt side and the KEK name cache.
	NotFoundTTL time.Duration

	// KEKRefreshAfter is the age at which a resolved KEK name is re-resolved
	// in the background; KEKExpireAfter the age after which it is not used.
	KEKRefreshAfter time.Duration
	KEKExpireAfter  time.Duration
	// KEKCacheSize bounds the number of KEK names remembered.
	KEKCacheSize int
	// KEKCheckInterval is how often Run re-resolves every KEK whose positive
	// answer is cached (the KEKs records are being sealed under). A KEK the
	// KMS then reports missing, disabled or otherwise unusable has its DEK
	// dropped and its topics refused: this interval plus one KMS call bounds
	// how long records keep being sealed under a KEK that is gone.
	KEKCheckInterval time.Duration

	// KMSTimeout bounds one KMS operation including its retries. A call still
	// running then is abandoned (its late result discarded and wiped).
	KMSTimeout time.Duration
	// KMSAttempts is how often a call failing with kms.ErrUnavailable is tried.
	KMSAttempts int
	// KMSBackoff is the first pause between attempts (jittered, doubling up to
	// KMSBackoffMax). KMSBackoffMax is also the pause before a failed
	// background refresh is tried again.
	KMSBackoff    time.Duration
	KMSBackoffMax time.Duration

	// Now is the clock for ages and TTLs; tests inject their own.
	Now func() time.Time
	// Hooks receive events for metrics.
	Hooks Hooks
	// UsedKEKs remembers the KEK names that resolved, so that their later
	// "not found" is a refusal. Managers that replace one another (reload)
	// share one. Nil: the Manager's own.
	UsedKEKs *UsedKEKs
	// Counters holds the cumulative counters Stats reports. Managers that
	// replace one another (a config reload builds a new one) share one, so
	// totals carry over and never go backwards. Nil: the Manager's own.
	Counters *Counters
}

// Op names a KMS operation in hooks.
type Op string

// KMS operations.
const (
	OpResolveKEK  Op = "resolve_kek"
	OpGenerateDEK Op = "generate_dek"
	OpDecryptDEK  Op = "decrypt_dek"
)

// Hooks are optional callbacks for metrics and audit events; they must be
// fast and must not block. Counters are in Stats; hooks are for what counters cannot hold.
type Hooks struct {
	// OnKMSCall is called after every KMS attempt with its latency and error.
	OnKMSCall func(op Op, d time.Duration, err error)
	// OnKEKState is called after every KMS answer about a KEK name that
	// is not transient: err is nil when it resolved, wraps
	// kms.ErrKeyNotFound or kms.ErrKeyUnusable (also when a DEK request
	// finds the KEK gone), or is another refusal (e.g. permission denied).
	// It runs on a background goroutine, with no lock held. For audit
	// events; nil: not called.
	OnKEKState func(name string, err error)
	// OnDEKGenerated is called after a new DEK was made under kek, with
	// its EDEK (never the key; the caller must not keep or change it).
	OnDEKGenerated func(kek kms.KEKRef, edek []byte)
}

func (o Options) withDefaults() Options {
	setDur := func(d *time.Duration, def time.Duration) {
		if *d == 0 {
			*d = def
		}
	}
	setDur(&o.RefreshAfterWrite, DefaultRefreshAfterWrite)
	setDur(&o.ExpireAfterWrite, DefaultExpireAfterWrite)
	setDur(&o.DecryptCacheTTL, DefaultDecryptCacheTTL)
	setDur(&o.DecryptCacheMaxAge, DefaultDecryptCacheMaxAge)
	setDur(&o.NotFoundTTL, DefaultNotFoundTTL)
	setDur(&o.KEKRefreshAfter, DefaultKEKRefreshAfter)
	setDur(&o.KEKExpireAfter, DefaultKEKExpireAfter)
	setDur(&o.KEKCheckInterval, DefaultKEKCheckInterval)
	setDur(&o.KMSTimeout, DefaultKMSTimeout)
	setDur(&o.KMSBackoff, DefaultKMSBackoff)
	setDur(&o.KMSBackoffMax, DefaultKMSBackoffMax)
	if o.MaxEncryptionsPerDEK == 0 {
		o.MaxEncryptionsPerDEK = DefaultMaxEncryptionsPerDEK
	}
	if o.DecryptCacheSize == 0 {
		o.DecryptCacheSize = DefaultDecryptCacheSize
	}
	if o.KEKCacheSize == 0 {
		o.KEKCacheSize = DefaultKEKCacheSize
	}
	if o.KMSAttempts == 0 {
		o.KMSAttempts = DefaultKMSAttempts
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// validate checks options after defaults were applied.
func (o Options) validate() error {
	var errs []error
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"refreshAfterWrite", o.RefreshAfterWrite}, {"expireAfterWrite", o.ExpireAfterWrite},
		{"decryptCacheTTL", o.DecryptCacheTTL}, {"decryptCacheMaxAge", o.DecryptCacheMaxAge}, {"notFoundTTL", o.NotFoundTTL},
		{"kekRefreshAfter", o.KEKRefreshAfter}, {"kekExpireAfter", o.KEKExpireAfter},
		{"kekCheckInterval", o.KEKCheckInterval},
		{"kmsTimeout", o.KMSTimeout}, {"kmsBackoff", o.KMSBackoff}, {"kmsBackoffMax", o.KMSBackoffMax},
	} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("%s: %v is negative", d.name, d.v))
		}
	}
	if o.RefreshAfterWrite >= o.ExpireAfterWrite {
		errs = append(errs, fmt.Errorf("refreshAfterWrite: %v must be below expireAfterWrite %v", o.RefreshAfterWrite, o.ExpireAfterWrite))
	}
	if o.KEKRefreshAfter >= o.KEKExpireAfter {
		errs = append(errs, fmt.Errorf("kekRefreshAfter: %v must be below kekExpireAfter %v", o.KEKRefreshAfter, o.KEKExpireAfter))
	}
	if o.DecryptCacheMaxAge >= 0 && o.DecryptCacheMaxAge < MinDecryptCacheMaxAge {
		errs = append(errs, fmt.Errorf("decryptCacheMaxAge: %v is below the minimum %v", o.DecryptCacheMaxAge, MinDecryptCacheMaxAge))
	}
	if o.MaxEncryptionsPerDEK > MaxEncryptionsCeiling {
		errs = append(errs, fmt.Errorf("maxEncryptionsPerDek: %d is above the GCM limit of 2^32", o.MaxEncryptionsPerDEK))
	}
	if o.DecryptCacheSize < 0 {
		errs = append(errs, fmt.Errorf("decryptCacheSize: %d is negative", o.DecryptCacheSize))
	}
	if o.KEKCacheSize < 0 {
		errs = append(errs, fmt.Errorf("kekCacheSize: %d is negative", o.KEKCacheSize))
	}
	if o.KMSAttempts < 0 {
		errs = append(errs, fmt.Errorf("kmsAttempts: %d is negative", o.KMSAttempts))
	}
	return errors.Join(errs...)
}
