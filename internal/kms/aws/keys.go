package aws

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"

	"github.com/kseal/kseal/internal/kms"
)

// keyARN is the part of a key ARN "arn:<partition>:kms:<region>:<account>:key/<id>"
// kseal checks.
type keyARN struct {
	partition, region, account, id string // id: "1234abcd-..." or "mrk-..."
}

// parseKeyARN reads a key ARN; alias ARNs and anything else are not one.
func parseKeyARN(s string) (keyARN, bool) {
	parts := strings.SplitN(s, ":", 6)
	if len(parts) != 6 || parts[0] != "arn" || parts[1] == "" || parts[2] != "kms" || parts[3] == "" ||
		!validAccount(parts[4]) || !strings.HasPrefix(parts[5], "key/") || len(parts[5]) == len("key/") {
		return keyARN{}, false
	}
	return keyARN{partition: parts[1], region: parts[3], account: parts[4], id: parts[5][len("key/"):]}, true
}

// allowedAccounts is the set of accounts whose key ARNs EDEKs may name: the
// account of an alias ARN prefix and cfg.AllowedAccounts.
func allowedAccounts(cfg *Config) map[string]bool {
	set := map[string]bool{}
	if a, ok := aliasPrefixAccount(cfg.AliasPrefix); ok {
		set[a] = true
	}
	for _, a := range cfg.AllowedAccounts {
		set[a] = true
	}
	return set
}

// allowedRegions is the set of cfg.AllowedRegions (the client's own region
// is always allowed and checked separately).
func allowedRegions(cfg *Config) map[string]bool {
	set := map[string]bool{}
	for _, r := range cfg.AllowedRegions {
		set[r] = true
	}
	return set
}

func aliasPrefixAccount(p string) (string, bool) {
	parts := strings.SplitN(p, ":", 6)
	if len(parts) == 6 && parts[0] == "arn" && validAccount(parts[4]) && strings.HasPrefix(parts[5], "alias/") {
		return parts[4], true
	}
	return "", false
}

// checkKey says whether kseal may write or open EDEKs naming id, without
// asking AWS, and returns the key identifier to send to AWS. EDEKs come back
// from the broker, where anyone able to produce directly could have written
// them: kseal decrypts only under keys its configuration can reach. A bare
// key id (single- or multi-Region) is looked up by AWS in kseal's own
// account and region, and Decrypt's KeyId then makes AWS check the blob
// belongs to it; a key ARN must be in an allowed account (allowedAccounts,
// or the account of an alias ARN aliasPrefix) and in the client's region,
// or, for a multi-Region key (mrk-...), in one of allowedRegions: that ARN
// is sent with the client's region, naming the local replica, which shares
// the key id and key material and so opens the blob. Nothing else (alias
// names or ARNs, which can be repointed) is ever written by kseal, so
// nothing else is opened.
func (k *KMS) checkKey(id string) (string, error) {
	if isCompact(id) {
		return id, nil
	}
	a, ok := parseKeyARN(id)
	switch {
	case !ok:
		return "", fmt.Errorf("aws kms: key %q is neither a key id nor a key ARN; kseal opens no other EDEKs", id)
	case !k.accounts[a.account]:
		return "", fmt.Errorf("aws kms: key %s is in account %s, which kseal does not use (add it to kms.config.allowedAccounts if kseal's keys live there)", id, a.account)
	case a.region == k.region:
		return id, nil
	case !k.regions[a.region]:
		return "", fmt.Errorf("aws kms: key %s is in region %s, not in this KMS client's region %s (for a multi-Region key replicated here, add %s to kms.config.allowedRegions)", id, a.region, k.region, a.region)
	case !strings.HasPrefix(a.id, "mrk-"):
		return "", fmt.Errorf("aws kms: key %s is a single-Region key in region %s; this KMS client decrypts only in %s", id, a.region, k.region)
	}
	return "arn:" + a.partition + ":kms:" + k.region + ":" + a.account + ":key/" + a.id, nil
}

// httpClient is the SDK's HTTP client with one change: a redirect to
// another scheme, host or port is refused before anything is sent there.
// The SDK follows 307 and 308 and drops only X-Amz-Security-Token when the
// host changes; net/http keeps Authorization (the signature) for a
// subdomain or another port of the same host, and a 307 resends the body,
// which holds the web identity token of an AssumeRoleWithWebIdentity. KMS,
// STS and the credential endpoints never redirect kseal anywhere else.
//
// The SDK's client owns CheckRedirect, so the refusal is made where the
// transport picks a proxy for each request, redirects included: an error
// there aborts the request before a connection is made.
func httpClient() *awshttp.BuildableClient {
	return awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) {
		next := tr.Proxy
		tr.Proxy = func(req *http.Request) (*url.URL, error) {
			if r := req.Response; r != nil && r.Request != nil && !kms.SameOrigin(r.Request.URL, req.URL) {
				return nil, kms.CheckRedirect(req, []*http.Request{r.Request})
			}
			if next == nil {
				return nil, nil
			}
			return next(req)
		}
	})
}
