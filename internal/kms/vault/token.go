package vault

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/kseal/kseal/internal/kms"
	"github.com/kseal/kseal/internal/kms/kmsutil"
)

// Token maintenance timings; variables so tests can shorten them.
var (
	// tokenFileCheck is how often the token file is checked for a new
	// token (one stat; read only when it changed).
	tokenFileCheck = 10 * time.Second
	// renewRetryMax caps the backoff between failed renewals.
	renewRetryMax = 30 * time.Second
	// renewMin is the shortest wait between two successful renewals.
	renewMin = 500 * time.Millisecond
)

// tokenAuth is the auth block of renew-self's answer.
type tokenAuth struct {
	// ClientToken is the token a login returns; cleared as soon as it is
	// stored, and never logged.
	ClientToken   string `json:"client_token"`
	LeaseDuration int64  `json:"lease_duration"` // seconds; 0 = never expires
	Renewable     bool   `json:"renewable"`
}

// fileStamp identifies a version of the token file.
type fileStamp struct {
	fi os.FileInfo
}

func (s fileStamp) same(fi os.FileInfo) bool {
	return s.fi != nil && os.SameFile(s.fi, fi) && s.fi.ModTime().Equal(fi.ModTime()) && s.fi.Size() == fi.Size()
}

// loadToken reads the token once, at start.
func (k *KMS) loadToken(cfg *Config) error {
	if cfg.TokenEnv != "" {
		tok := strings.TrimSpace(os.Getenv(cfg.TokenEnv))
		if tok == "" {
			return fmt.Errorf("vault kms: tokenEnv: environment variable %s is empty or not set", cfg.TokenEnv)
		}
		if err := checkToken(tok); err != nil {
			return fmt.Errorf("vault kms: tokenEnv: %s: %w", cfg.TokenEnv, err)
		}
		k.token.Store(&tok)
		return nil
	}
	if _, err := k.reloadTokenFile(); err != nil {
		return fmt.Errorf("vault kms: %w", err)
	}
	return nil
}

// reloadTokenFile reads the token file if it changed since it was last
// read, and reports whether the token changed. On error the token in use
// stays.
func (k *KMS) reloadTokenFile() (bool, error) {
	fi, err := os.Stat(k.tokenFile)
	if err != nil {
		return false, fmt.Errorf("tokenFile: %w", err)
	}
	if k.tokenStat.same(fi) {
		return false, nil
	}
	b, err := kmsutil.ReadSmall(k.tokenFile)
	if err != nil {
		return false, fmt.Errorf("tokenFile: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	clear(b)
	if err := checkToken(tok); err != nil {
		return false, fmt.Errorf("tokenFile %s: %w", k.tokenFile, err)
	}
	k.tokenStat = fileStamp{fi}
	if old := k.token.Load(); old != nil && *old == tok {
		return false, nil
	}
	k.token.Store(&tok)
	return true, nil
}

// checkToken rejects what cannot be a token, without saying anything about
// the value itself.
func checkToken(tok string) error {
	if tok == "" {
		return errors.New("token is empty")
	}
	if len(tok) > 8192 {
		return errors.New("token is longer than 8192 bytes")
	}
	for i := range len(tok) {
		if c := tok[i]; c <= ' ' || c > '~' {
			return fmt.Errorf("token has a space or non-printable byte at offset %d", i)
		}
	}
	return nil
}

// maintain runs until Close: it swaps in a changed token file and, with
// RenewToken, renews the token before its TTL runs out.
func (k *KMS) maintain() {
	defer close(k.done)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		// Close must not wait for a renewal stuck on a hung server.
		<-k.stop
		cancel()
	}()

	var fileTick <-chan time.Time
	if k.tokenFile != "" {
		t := time.NewTicker(tokenFileCheck)
		defer t.Stop()
		fileTick = t.C
	}
	renewTimer := time.NewTimer(0)
	defer renewTimer.Stop()
	renewC := renewTimer.C
	if !k.renew {
		renewTimer.Stop()
		renewC = nil
	}
	var (
		fileErr   string
		backoff   time.Duration
		lastLease time.Duration
	)
	for {
		select {
		case <-k.stop:
			return
		case <-fileTick:
			changed, err := k.reloadTokenFile()
			switch {
			case err != nil:
				if err.Error() != fileErr {
					fileErr = err.Error()
					k.logger.Error("vault kms: token file reload failed; keeping the token read before", "err", err)
				}
				continue
			case fileErr != "":
				fileErr = ""
				k.logger.Info("vault kms: token file reads again", "path", k.tokenFile)
			}
			if changed {
				k.logger.Info("vault kms: token file changed; using the new token", "path", k.tokenFile)
				if k.renew {
					backoff, lastLease = 0, 0
					renewC = renewTimer.C
					renewTimer.Reset(0)
				}
			}
		case <-renewC:
			var auth *tokenAuth
			err := k.call(ctx, "renew token", "", http.MethodPost, "auth/token/renew-self", []byte(`{}`), &auth)
			if err == nil && auth == nil {
				err = errors.New("vault kms: renew token: answer has no auth block")
			}
			switch {
			case err != nil && ctx.Err() != nil:
				return
			case err != nil && strings.Contains(err.Error(), "not renewable"):
				k.logger.Info("vault kms: token is not renewable (a root or fixed-TTL token?); renewal stops until the token changes")
				renewC = nil
			case err != nil:
				backoff = min(max(2*backoff, time.Second), renewRetryMax)
				level := slogLevel(err)
				k.logger.Log(ctx, level, "vault kms: token renewal failed; retrying", "retry_in", backoff, "err", err)
				renewTimer.Reset(backoff)
			case auth.LeaseDuration <= 0 || !auth.Renewable:
				k.logger.Info("vault kms: token does not expire or cannot be renewed further; renewal stops until the token changes",
					"ttl", time.Duration(auth.LeaseDuration)*time.Second, "renewable", auth.Renewable)
				renewC = nil
			default:
				lease := time.Duration(auth.LeaseDuration) * time.Second
				if lastLease > 0 && lease < lastLease {
					// A token with an explicit max TTL shrinks toward it;
					// only a new token helps then.
					k.logger.Warn("vault kms: token TTL is shrinking toward its max TTL; provide a new token before it expires", "ttl", lease)
				} else {
					k.logger.Debug("vault kms: token renewed", "ttl", lease)
				}
				backoff, lastLease = 0, lease
				renewTimer.Reset(max(lease*2/3, renewMin))
			}
		}
	}
}

// slogLevel is Warn for transient failures and Error for the rest (a
// revoked token or a policy without renew-self needs a person).
func slogLevel(err error) slog.Level {
	if errors.Is(err, kms.ErrUnavailable) {
		return slog.LevelWarn
	}
	return slog.LevelError
}
