package vault

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/kseal/kseal/internal/kms"
)

// Probe asks sys/health, without the token, accepting standbys; a sealed,
// uninitialised or unreachable server is not ready.
func TestProbe(t *testing.T) {
	var status atomic.Int32
	status.Store(http.StatusOK)
	var query, token atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/sys/health" || r.Method != http.MethodGet {
			t.Errorf("probe asked %s %s", r.Method, r.URL.Path)
		}
		query.Store(r.URL.RawQuery)
		token.Store(r.Header.Get("X-Vault-Token"))
		w.WriteHeader(int(status.Load()))
		w.Write([]byte(`{"initialized":true,"sealed":false,"standby":false}`))
	}))
	defer srv.Close()
	k, _ := openTest(t, srv.URL, nil)
	if err := k.Probe(context.Background()); err != nil {
		t.Fatalf("healthy server: %v", err)
	}
	if q := query.Load().(string); !strings.Contains(q, "standbyok=true") || !strings.Contains(q, "perfstandbyok=true") {
		t.Errorf("probe query %q does not accept standbys", q)
	}
	if tok := token.Load().(string); tok != "" {
		t.Error("probe sent the token to sys/health, which needs none")
	}
	for code, want := range map[int32]string{503: "sealed", 501: "not initialized", 472: "HTTP 472"} {
		status.Store(code)
		err := k.Probe(context.Background())
		if err == nil || !strings.Contains(err.Error(), want) || !errors.Is(err, kms.ErrUnavailable) {
			t.Errorf("HTTP %d: err = %v, want unavailable, %q", code, err, want)
		}
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	down, _ := openTest(t, "http://"+addr, nil)
	if err := down.Probe(context.Background()); !errors.Is(err, kms.ErrUnavailable) {
		t.Errorf("unreachable server: err = %v, want ErrUnavailable", err)
	}
}
