package vault

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/kseal/kseal/internal/kms"
	"github.com/kseal/kseal/internal/kms/kmsutil"
)

// reloginMin is the shortest time between two log-ins triggered by a
// refused request: a policy that lacks a Transit path answers 403 to every
// token, and logging in again for each request would only load the server.
// A variable so tests can shorten it.
var reloginMin = 10 * time.Second

// login reads the credential files afresh (a rotated secret id or a
// projected service-account token is picked up on every log-in) and logs in
// at auth/<mount>/login. It returns the auth block with the new token; the
// caller stores it. Neither the credentials nor the token appear in errors
// or logs.
func (k *KMS) login(ctx context.Context) (*tokenAuth, error) {
	a := k.auth
	body := map[string]string{}
	defer clear(body)
	read := func(key, path, field string) error {
		b, err := kmsutil.ReadSmall(path)
		if err != nil {
			return fmt.Errorf("vault kms: auth.%s: %w", key, err)
		}
		v := strings.TrimSpace(string(b))
		clear(b)
		if err := checkToken(v); err != nil {
			// checkToken's messages describe the shape, never the value.
			return fmt.Errorf("vault kms: auth.%s %s: %s", key, path, strings.Replace(err.Error(), "token", "credential", 1))
		}
		body[field] = v
		return nil
	}
	switch a.Method {
	case AuthAppRole:
		if err := read("roleIdFile", a.RoleIDFile, "role_id"); err != nil {
			return nil, err
		}
		if a.SecretIDFile != "" {
			if err := read("secretIdFile", a.SecretIDFile, "secret_id"); err != nil {
				return nil, err
			}
		}
	case AuthKubernetes, AuthJWT:
		if err := read("jwtFile", a.jwtFile(), "jwt"); err != nil {
			return nil, err
		}
		body["role"] = a.Role
	default:
		return nil, fmt.Errorf("vault kms: auth.method %q cannot log in", a.Method)
	}
	raw, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("vault kms: login: %w", err)
	}
	defer clear(raw)
	var auth *tokenAuth
	if err := k.send(ctx, "login ("+a.Method+" at auth/"+a.mount()+")", "", http.MethodPost, "auth/"+a.mount()+"/login", raw, &auth, ""); err != nil {
		return nil, err
	}
	if auth == nil || auth.ClientToken == "" {
		return nil, fmt.Errorf("vault kms: login (%s at auth/%s): answer has no token", a.Method, a.mount())
	}
	if err := checkToken(auth.ClientToken); err != nil {
		return nil, fmt.Errorf("vault kms: login (%s at auth/%s): server sent an unusable token: %w", a.Method, a.mount(), err)
	}
	return auth, nil
}

// relogin logs in unless the token is no longer stale (another goroutine
// logged in meanwhile) and returns the token to use. From a request path
// (notify), the maintenance goroutine learns of the new token's TTL so it
// renews that one.
func (k *KMS) relogin(ctx context.Context, stale string, notify bool) (string, error) {
	k.loginMu.Lock()
	defer k.loginMu.Unlock()
	if cur := k.token.Load(); cur != nil && *cur != stale {
		return *cur, nil
	}
	if notify && !k.lastLogin.IsZero() && time.Since(k.lastLogin) < reloginMin {
		return "", errors.New("vault kms: token refused right after a log-in; not logging in again yet (does the role's policy allow this path?)")
	}
	auth, err := k.loginLocked(ctx, stale)
	if err != nil {
		return "", err
	}
	if auth == nil {
		return *k.token.Load(), nil
	}
	if notify {
		select {
		case k.loggedIn <- *auth:
		default:
		}
	}
	return *k.token.Load(), nil
}

// maintainLogin keeps a logged-in token alive until Close: it renews the
// token after two thirds of each TTL and logs in again when renewal fails
// for a reason other than an outage, when the token cannot be renewed, or
// when its TTL shrinks toward the role's max TTL.
func (k *KMS) maintainLogin() {
	defer close(k.done)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-k.stop
		cancel()
	}()

	timer := time.NewTimer(0)
	defer timer.Stop()
	var (
		needLogin = k.token.Load() == nil
		backoff   time.Duration
		lastLease time.Duration
	)
	// schedule plans the next step for a token just granted auth.
	schedule := func(auth tokenAuth, fromLogin bool) {
		lease := time.Duration(auth.LeaseDuration) * time.Second
		backoff = 0
		switch {
		case lease <= 0 && fromLogin:
			// Never expires: nothing to do until a request is refused.
			needLogin = false
			timer.Stop()
			return
		case lease <= 0:
			// Renewed to less than a second: about to expire.
			needLogin = true
			timer.Reset(0)
			return
		case !auth.Renewable:
			needLogin = true
		case !fromLogin && lastLease > 0 && lease < lastLease:
			// The TTL shrinks toward the max TTL: renewing cannot help,
			// a new log-in can.
			k.logger.Debug("vault kms: token TTL is shrinking toward its max TTL; logging in again before it expires", "ttl", lease)
			needLogin = true
		default:
			needLogin = false
		}
		lastLease = lease
		timer.Reset(max(lease*2/3, renewMin))
	}
	retry := func(what string, err error) {
		backoff = min(max(2*backoff, time.Second), renewRetryMax)
		k.logger.Log(ctx, slogLevel(err), "vault kms: "+what+" failed; retrying", "retry_in", backoff, "err", err)
		timer.Reset(backoff)
	}
	for {
		select {
		case <-k.stop:
			return
		case auth := <-k.loggedIn:
			timer.Stop()
			schedule(auth, true)
		case <-timer.C:
			cur := ""
			if p := k.token.Load(); p != nil {
				cur = *p
			}
			if needLogin {
				k.loginMu.Lock()
				auth, err := k.loginLocked(ctx, cur)
				k.loginMu.Unlock()
				switch {
				case err != nil && ctx.Err() != nil:
					return
				case err != nil:
					retry("log-in", err)
				case auth != nil:
					schedule(*auth, true)
				default:
					// A request logged in meanwhile; its notice follows.
					timer.Reset(renewMin)
				}
				continue
			}
			var auth *tokenAuth
			err := k.send(ctx, "renew token", "", http.MethodPost, "auth/token/renew-self", []byte(`{}`), &auth, cur)
			if err == nil && auth == nil {
				err = errors.New("vault kms: renew token: answer has no auth block")
			}
			if auth != nil {
				auth.ClientToken = ""
			}
			switch {
			case err != nil && ctx.Err() != nil:
				return
			case err != nil && !errors.Is(err, kms.ErrUnavailable):
				// Refused (expired, revoked, not renewable): log in again.
				k.logger.Info("vault kms: token renewal refused; logging in again", "err", err)
				needLogin, backoff = true, 0
				timer.Reset(0)
			case err != nil:
				retry("token renewal", err)
			default:
				schedule(*auth, false)
			}
		}
	}
}

// loginLocked is relogin's body for the maintenance goroutine, which holds
// loginMu: it returns nil, nil when the token changed since cur was read.
func (k *KMS) loginLocked(ctx context.Context, cur string) (*tokenAuth, error) {
	if p := k.token.Load(); p != nil && *p != cur {
		return nil, nil
	}
	auth, err := k.login(ctx)
	if err != nil {
		return nil, err
	}
	tok := auth.ClientToken
	auth.ClientToken = ""
	k.token.Store(&tok)
	k.lastLogin = time.Now()
	k.logins.Add(1)
	k.logger.Info("vault kms: logged in", "method", k.auth.Method, "mount", k.auth.mount(),
		"ttl", time.Duration(auth.LeaseDuration)*time.Second, "renewable", auth.Renewable)
	return auth, nil
}
