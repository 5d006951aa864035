// Package admin serves kseal's operational HTTP endpoints on their own
// listener, apart from the Kafka ports: Prometheus metrics, liveness and
// readiness, and on request Go's profiler. It never serves anything that
// could hold key material.
package admin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Server is the admin HTTP server.
type Server struct {
	srv  *http.Server
	ln   net.Listener
	log  *slog.Logger
	addr string
}

// ReadyFunc reports why the process is not ready to serve, or nil.
type ReadyFunc func(ctx context.Context) error

// Options are the admin server's optional endpoints.
type Options struct {
	// Profiling serves net/http/pprof under /debug/pprof/.
	Profiling bool
}

// Listen binds addr and serves /metrics from g, /healthz (the process is
// alive) and /readyz (ready reports nil).
func Listen(addr string, g prometheus.Gatherer, ready ReadyFunc, log *slog.Logger, opts Options) (*Server, error) {
	mux := http.NewServeMux()
	paths := "/metrics /healthz /readyz"
	if opts.Profiling {
		// Profiles hold stacks and allocation sites, never memory contents.
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
		paths += " /debug/pprof/"
	}
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{ErrorLog: slogPrinter{log}}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := ready(ctx); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("admin listener: %w", err)
	}
	s := &Server{
		srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second},
		ln:  ln, log: log, addr: ln.Addr().String(),
	}
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("admin listener failed", "error", err.Error())
		}
	}()
	log.Info("admin endpoints listening", "addr", s.addr, "paths", paths)
	return s, nil
}

// Addr is the bound address.
func (s *Server) Addr() string { return s.addr }

// Close stops the server.
func (s *Server) Close(ctx context.Context) error { return s.srv.Shutdown(ctx) }

type slogPrinter struct{ log *slog.Logger }

func (p slogPrinter) Println(v ...any) { p.log.Error("metrics", "error", fmt.Sprint(v...)) }
