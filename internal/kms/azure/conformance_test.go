package azure

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/kseal/kseal/internal/kms"
)

// vaultServer is what the conformance scenario needs from a server beyond
// the Key Vault REST API: stopping it, restarting it on the same address,
// and freezing it (requests hang) to exercise timeouts.
type vaultServer interface {
	stop(t *testing.T)
	start(t *testing.T)
	pause(t *testing.T)
	resume(t *testing.T)
	// keepsKeys reports whether keys survive a restart.
	keepsKeys() bool
}

// adminCall sends a management request (create, rotate) with the KMS's
// TLS settings and token, so the fake and a real server are driven alike. It
// has its own client: creating an RSA key may take longer than the KMS's
// per-call timeout allows. Like the KMS, it retries once after a 401 with a
// fresh token (a restarted emulator no longer knows the old one).
func adminCall(t *testing.T, k *KMS, method, path string, in any) map[string]any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: k.transport.TLSClientConfig.Clone()}}
	defer hc.CloseIdleConnections()
	var reqBody []byte
	if in != nil {
		reqBody, _ = json.Marshal(in)
	}
	for attempt := 0; ; attempt++ {
		tok, err := k.tokens.get(ctx)
		if err != nil {
			t.Fatalf("admin %s %s: token: %v", method, path, err)
		}
		var body io.Reader
		if in != nil {
			body = bytes.NewReader(reqBody)
		}
		req, _ := http.NewRequestWithContext(ctx, method, k.base+path+"?api-version="+k.apiVersion, body)
		req.Header.Set("Authorization", "Bearer "+tok)
		if in != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("admin %s %s: %v", method, path, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusUnauthorized && attempt == 0 {
			k.tokens.invalidate(tok)
			continue
		}
		if resp.StatusCode/100 != 2 {
			t.Fatalf("admin %s %s: HTTP %d: %s", method, path, resp.StatusCode, b)
		}
		var out map[string]any
		if err := json.Unmarshal(b, &out); err != nil {
			t.Fatalf("admin %s %s: %v", method, path, err)
		}
		return out
	}
}

func createKey(t *testing.T, k *KMS, name, kty string, size int) {
	t.Helper()
	adminCall(t, k, http.MethodPost, "/keys/"+name+"/create", map[string]any{
		"kty": kty, "key_size": size, "key_ops": []string{"wrapKey", "unwrapKey"},
	})
}

func rotateKey(t *testing.T, k *KMS, name string) string {
	t.Helper()
	kb := adminCall(t, k, http.MethodPost, "/keys/"+name+"/rotate", nil)
	key, _ := kb["key"].(map[string]any)
	kid, _ := key["kid"].(string)
	v, err := versionFromKID(kid, name)
	if err != nil {
		t.Fatalf("rotate %s: %v", name, err)
	}
	return v
}

// runConformance is the provider's behaviour against a server: round trip,
// rotation, unknown keys, a hung server, a stopped and restarted server.
// timeout is the KMS's configured per-call timeout.
func runConformance(t *testing.T, k *KMS, srv vaultServer, timeout time.Duration) {
	ctx := context.Background()
	const name = "KEK-conformance"
	createKey(t, k, name, "RSA", 2048)

	// Round trip.
	ref, err := k.ResolveKEK(ctx, name)
	if err != nil {
		t.Fatalf("ResolveKEK: %v", err)
	}
	if ref.Name != name || ref.ID != name {
		t.Fatalf("ResolveKEK = %+v", ref)
	}
	d1, err := k.GenerateDEK(ctx, ref)
	if err != nil {
		t.Fatalf("GenerateDEK: %v", err)
	}
	if len(d1.Key) != 32 {
		t.Fatalf("DEK is %d bytes", len(d1.Key))
	}
	if want := 1 + 1 + len(name) + 1 + 16 + 256; len(d1.EDEK) != want {
		t.Fatalf("EDEK is %d bytes, want %d", len(d1.EDEK), want)
	}
	t.Logf("EDEK size for %q with RSA-2048: %d bytes", name, len(d1.EDEK))
	info1, err := k.DescribeEDEK(d1.EDEK)
	if err != nil || info1.KEK != name || !isHexVersion(info1.Version) {
		t.Fatalf("DescribeEDEK = %+v, %v", info1, err)
	}
	got, err := k.DecryptDEK(ctx, d1.EDEK)
	if err != nil || !bytes.Equal(got, d1.Key) {
		t.Fatalf("DecryptDEK = %x, %v; want the generated key", got, err)
	}

	// Rotation: new DEKs use the new version, old EDEKs still decrypt.
	v2 := rotateKey(t, k, name)
	if v2 == info1.Version {
		t.Fatal("rotate kept the version")
	}
	d2, err := k.GenerateDEK(ctx, ref)
	if err != nil {
		t.Fatalf("GenerateDEK after rotate: %v", err)
	}
	if info2, _ := k.DescribeEDEK(d2.EDEK); info2.Version != v2 {
		t.Fatalf("DEK after rotation is under version %s, want %s", info2.Version, v2)
	}
	for i, d := range []kms.DEK{d1, d2} {
		got, err := k.DecryptDEK(ctx, d.EDEK)
		if err != nil || !bytes.Equal(got, d.Key) {
			t.Fatalf("DecryptDEK of DEK %d after rotation: %v", i+1, err)
		}
	}

	// Unknown key.
	if _, err := k.ResolveKEK(ctx, "KEK-does-not-exist"); !errors.Is(err, kms.ErrKeyNotFound) {
		t.Fatalf("ResolveKEK(unknown) = %v, want ErrKeyNotFound", err)
	}
	if _, err := k.GenerateDEK(ctx, kms.KEKRef{Name: "KEK-does-not-exist", ID: "KEK-does-not-exist"}); !errors.Is(err, kms.ErrKeyNotFound) {
		t.Fatalf("GenerateDEK(unknown) = %v, want ErrKeyNotFound", err)
	}
	p, _ := parseEDEK(d1.EDEK)
	forged := appendEDEK(nil, "KEK-does-not-exist", p.version, p.alg, p.wrapped)
	if _, err := k.DecryptDEK(ctx, forged); !errors.Is(err, kms.ErrKeyNotFound) {
		t.Fatalf("DecryptDEK(unknown key) = %v, want ErrKeyNotFound", err)
	}

	// A hung server: ErrUnavailable within the timeout, then service again.
	srv.pause(t)
	start := time.Now()
	_, err = k.DecryptDEK(ctx, d1.EDEK)
	elapsed := time.Since(start)
	srv.resume(t)
	if !errors.Is(err, kms.ErrUnavailable) {
		t.Fatalf("DecryptDEK on a hung server = %v, want ErrUnavailable", err)
	}
	if elapsed > timeout+time.Second {
		t.Fatalf("DecryptDEK on a hung server took %v, timeout is %v", elapsed, timeout)
	}
	if got, err := k.DecryptDEK(ctx, d1.EDEK); err != nil || !bytes.Equal(got, d1.Key) {
		t.Fatalf("DecryptDEK after resume: %v", err)
	}

	// A stopped server: ErrUnavailable quickly; works again after restart.
	srv.stop(t)
	start = time.Now()
	_, err = k.DecryptDEK(ctx, d1.EDEK)
	if !errors.Is(err, kms.ErrUnavailable) {
		t.Fatalf("DecryptDEK on a stopped server = %v, want ErrUnavailable", err)
	}
	if _, err := k.GenerateDEK(ctx, ref); !errors.Is(err, kms.ErrUnavailable) {
		t.Fatalf("GenerateDEK on a stopped server = %v, want ErrUnavailable", err)
	}
	if el := time.Since(start); el > 2*timeout+time.Second {
		t.Fatalf("calls on a stopped server took %v", el)
	}
	srv.start(t)
	after := name
	if !srv.keepsKeys() {
		after = "KEK-after-restart"
		createKey(t, k, after, "RSA", 2048)
	}
	d3, err := k.GenerateDEK(ctx, kms.KEKRef{Name: after, ID: after})
	if err != nil {
		t.Fatalf("GenerateDEK after restart: %v", err)
	}
	if got, err := k.DecryptDEK(ctx, d3.EDEK); err != nil || !bytes.Equal(got, d3.Key) {
		t.Fatalf("DecryptDEK after restart: %v", err)
	}
	if srv.keepsKeys() {
		if got, err := k.DecryptDEK(ctx, d1.EDEK); err != nil || !bytes.Equal(got, d1.Key) {
			t.Fatalf("DecryptDEK of a pre-restart EDEK: %v", err)
		}
	}
}

// fakeServer adapts fakeVault to vaultServer.
type fakeServer struct{ f *fakeVault }

func (s fakeServer) stop(*testing.T)   { s.f.Stop() }
func (s fakeServer) start(*testing.T)  { s.f.Start() }
func (s fakeServer) pause(*testing.T)  { s.f.Pause() }
func (s fakeServer) resume(*testing.T) { s.f.Resume() }
func (s fakeServer) keepsKeys() bool   { return true }

func TestConformanceFake(t *testing.T) {
	f := newFakeVault(t)
	cfg := fakeConfig(f)
	cfg.Timeout = 2 * time.Second
	k, err := New(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	runConformance(t, k, fakeServer{f}, cfg.Timeout)
}
