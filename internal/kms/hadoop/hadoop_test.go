package hadoop

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/kseal/kseal/internal/kms"
)

func openFake(t *testing.T, f *fakeKMS, edit func(*Config)) *KMS {
	t.Helper()
	c := NewConfig()
	c.Address = f.srv.URL
	c.User = f.user
	c.Timeout = 2 * time.Second
	if edit != nil {
		edit(c)
	}
	k, err := New(context.Background(), c, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	return k
}

func TestFakeRoundTripAndRotation(t *testing.T) {
	f := newFakeKMS(t)
	f.create("KEK-orders", 256)
	k := openFake(t, f, nil)
	ctx := context.Background()

	ref, err := k.ResolveKEK(ctx, "KEK-orders")
	if err != nil || ref != (kms.KEKRef{Name: "KEK-orders", ID: "KEK-orders"}) {
		t.Fatalf("ResolveKEK = %+v, %v", ref, err)
	}
	d0, err := k.GenerateDEK(ctx, ref)
	if err != nil || len(d0.Key) != 32 || len(d0.EDEK) != 73 {
		t.Fatalf("GenerateDEK = %d-byte key, %d-byte EDEK, %v", len(d0.Key), len(d0.EDEK), err)
	}
	if f.count("generate") != 1 || f.count("decrypt") != 1 {
		t.Fatalf("calls = %v, want one generate and one decrypt", f.calls)
	}
	got, err := k.DecryptDEK(ctx, d0.EDEK)
	if err != nil || !bytes.Equal(got, d0.Key) {
		t.Fatalf("DecryptDEK: %v", err)
	}
	f.roll("KEK-orders")
	d1, err := k.GenerateDEK(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if info, _ := DescribeEDEK(d1.EDEK); info.Version != "1" || info.KEK != "KEK-orders" {
		t.Fatalf("after roll over: %+v", info)
	}
	for _, d := range []kms.DEK{d0, d1} {
		if got, err := k.DecryptDEK(ctx, d.EDEK); err != nil || !bytes.Equal(got, d.Key) {
			t.Fatalf("DecryptDEK after roll over: %v", err)
		}
	}
	f.remove("KEK-orders")
	if _, err := k.ResolveKEK(ctx, "KEK-orders"); !errors.Is(err, kms.ErrKeyNotFound) {
		t.Fatalf("ResolveKEK(deleted) = %v", err)
	}
	if _, err := k.GenerateDEK(ctx, ref); !errors.Is(err, kms.ErrKeyNotFound) {
		t.Fatalf("GenerateDEK(deleted) = %v", err)
	}
	if _, err := k.DecryptDEK(ctx, d0.EDEK); !errors.Is(err, kms.ErrKeyNotFound) {
		t.Fatalf("DecryptDEK(deleted) = %v", err)
	}
}

func TestFakeRefusals(t *testing.T) {
	f := newFakeKMS(t)
	f.create("KEK-short", 128)
	f.create("KEK-a", 256)
	k := openFake(t, f, nil)
	ctx := context.Background()

	if _, err := k.ResolveKEK(ctx, "KEK-short"); err == nil || errors.Is(err, kms.ErrKeyNotFound) || !strings.Contains(err.Error(), "128 bits") {
		t.Errorf("128-bit key: %v", err)
	}
	// A key recreated at 128 bits after resolving: generate refuses it.
	if _, err := k.GenerateDEK(ctx, kms.KEKRef{Name: "KEK-short", ID: "KEK-short"}); err == nil || !strings.Contains(err.Error(), "16-byte key") {
		t.Errorf("GenerateDEK(128-bit) = %v", err)
	}
	for _, bad := range []string{"", "a/b", "../x", "a b", "k@1", strings.Repeat("a", 256)} {
		if _, err := k.ResolveKEK(ctx, bad); !errors.Is(err, kms.ErrKeyNotFound) {
			t.Errorf("ResolveKEK(%q) = %v, want ErrKeyNotFound without a request", bad, err)
		}
	}
	if f.count("metadata") != 1 {
		t.Errorf("metadata calls = %d, want 1 (bad names never reach the server)", f.count("metadata"))
	}
	// An EDEK naming another key than its version's: the server refuses it,
	// and it is neither "not found" nor retriable.
	d, err := k.GenerateDEK(ctx, kms.KEKRef{Name: "KEK-a", ID: "KEK-a"})
	if err != nil {
		t.Fatal(err)
	}
	_, version, iv, mat, _ := parseEDEK(d.EDEK)
	f.create("KEK-b", 256)
	if _, err := k.DecryptDEK(ctx, appendEDEK(nil, "KEK-b", string(version), iv, mat)); err == nil ||
		errors.Is(err, kms.ErrKeyNotFound) || errors.Is(err, kms.ErrUnavailable) || !strings.Contains(err.Error(), "does not belong") {
		t.Errorf("swapped key name: %v", err)
	}
	if _, err := k.DecryptDEK(ctx, []byte{9}); err == nil {
		t.Error("malformed EDEK accepted")
	}
	// A user the ACLs do not name: a plain error with the server's words.
	m := openFake(t, f, func(c *Config) { c.User = "mallory" })
	if _, err := m.ResolveKEK(ctx, "KEK-a"); err == nil || errors.Is(err, kms.ErrUnavailable) || !strings.Contains(err.Error(), "HTTP 403") {
		t.Errorf("unauthorised user: %v", err)
	}
}

func TestClassifyStatus(t *testing.T) {
	re := func(msg string) *remoteException {
		r := &remoteException{}
		r.RemoteException = &struct {
			Message       string `json:"message"`
			Exception     string `json:"exception"`
			JavaClassName string `json:"javaClassName"`
		}{Message: msg, Exception: "X"}
		return r
	}
	for _, tc := range []struct {
		status          int
		re              *remoteException
		notFound, retry bool
		contains        string
	}{
		{400, re("'k@7' not found"), true, false, "not found"},
		{500, re("NullPointerException: No KeyVersion exists for key 'k'"), true, false, "No KeyVersion"},
		{500, re("java.io.IOException: keystore unreadable"), false, true, "HTTP 500"},
		{400, re("KeyVersion 'a@0' does not belong to the key 'b'"), false, false, "does not belong"},
		{404, &remoteException{}, false, false, "no Hadoop KMS at this address"},
		{404, re("key gone"), true, false, "404"},
		{401, &remoteException{}, false, false, "authentication refused"},
		{403, re("User [x] is not authorized"), false, false, "ACLs"},
		{429, &remoteException{}, false, true, "429"},
		{502, &remoteException{}, false, true, "502"},
		{503, &remoteException{}, false, true, "503"},
		{409, re("exists"), false, false, "409"},
	} {
		err := classifyStatus(tc.status, tc.re)
		denied := tc.status == 401 || tc.status == 403
		if errors.Is(err, kms.ErrKeyNotFound) != tc.notFound || errors.Is(err, kms.ErrUnavailable) != tc.retry ||
			errors.Is(err, kms.ErrAccessDenied) != denied || !strings.Contains(err.Error(), tc.contains) {
			t.Errorf("%d %v: %v (notFound %v, retry %v)", tc.status, tc.re.RemoteException, err, tc.notFound, tc.retry)
		}
	}
}

func TestTransientErrorsAreUnavailable(t *testing.T) {
	f := newFakeKMS(t)
	f.create("KEK-a", 256)
	k := openFake(t, f, nil)
	ctx := context.Background()
	f.failNext(1, http.StatusServiceUnavailable)
	if _, err := k.ResolveKEK(ctx, "KEK-a"); !errors.Is(err, kms.ErrUnavailable) {
		t.Fatalf("503: %v, want ErrUnavailable", err)
	}
	if _, err := k.ResolveKEK(ctx, "KEK-a"); err != nil {
		t.Fatalf("after the outage: %v", err)
	}
	if err := k.Probe(ctx); err != nil {
		t.Fatalf("Probe: %v", err)
	}
	f.srv.Close()
	if _, err := k.ResolveKEK(ctx, "KEK-a"); !errors.Is(err, kms.ErrUnavailable) {
		t.Fatalf("server gone: %v, want ErrUnavailable", err)
	}
	if err := k.Probe(ctx); err == nil {
		t.Fatal("Probe with the server gone succeeded")
	}
}

func TestTimeout(t *testing.T) {
	stall := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-stall }))
	defer srv.Close()
	defer close(stall)
	c := NewConfig()
	c.Address, c.User, c.Timeout = srv.URL, "kseal", 200*time.Millisecond
	k, err := New(context.Background(), c, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	start := time.Now()
	if _, err := k.ResolveKEK(context.Background(), "KEK-a"); !errors.Is(err, kms.ErrUnavailable) {
		t.Fatalf("stalled server: %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("took %v with a 200ms timeout", d)
	}
}

// The user name rides in the query string: a redirect to another origin
// must not take it (nor the EEK in a decrypt body) along.
func TestNoCrossOriginRedirect(t *testing.T) {
	var hit bool
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hit = true }))
	defer other.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+r.URL.RequestURI(), http.StatusTemporaryRedirect)
	}))
	defer srv.Close()
	c := NewConfig()
	c.Address, c.User = srv.URL, "kseal"
	k, err := New(context.Background(), c, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	_, err = k.ResolveKEK(context.Background(), "KEK-a")
	if !errors.Is(err, kms.ErrRedirectRefused) || errors.Is(err, kms.ErrUnavailable) || hit {
		t.Fatalf("cross-origin redirect: %v (other origin reached: %v)", err, hit)
	}
}

func TestB64Decoding(t *testing.T) {
	want := []byte{0xfb, 0xff, 0x01, 0x02}
	for _, s := range []string{`"-_8BAg"`, `"+/8BAg=="`, `"-_8BAg=="`} {
		var b b64
		if err := b.UnmarshalJSON([]byte(s)); err != nil || !bytes.Equal(b, want) {
			t.Errorf("%s: %x, %v", s, []byte(b), err)
		}
	}
	for _, s := range []string{`"*"`, `12`, `"`} {
		var b b64
		if err := b.UnmarshalJSON([]byte(s)); err == nil {
			t.Errorf("%s accepted", s)
		}
	}
}
