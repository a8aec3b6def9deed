// Command bff is the backend-for-frontend that browsers talk to: it proxies
// the export API, relays job events (one upstream per job, shared by every
// browser watching it) and serves the demo page.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/exportstream/exportstream/bff/internal/backend"
	"github.com/exportstream/exportstream/bff/internal/httpapi"
	"github.com/exportstream/exportstream/bff/internal/relay"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bff:", err)
		os.Exit(1)
	}
}

type config struct {
	addr            string
	backendURL      string
	serviceToken    string
	staticDir       string
	heartbeat       time.Duration
	retry           time.Duration
	giveUp          time.Duration
	shutdownTimeout time.Duration
	logLevel        slog.Level
}

func parseFlags(args []string, stdout io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("bff", flag.ContinueOnError)
	fs.SetOutput(stdout)
	fs.StringVar(&c.addr, "addr", env("BFF_ADDR", ":8080"), "listen address (BFF_ADDR)")
	fs.StringVar(&c.backendURL, "backend-url", env("BACKEND_URL", "http://localhost:8081"), "base URL of the export backend (BACKEND_URL)")
	fs.StringVar(&c.serviceToken, "service-token", env("SERVICE_TOKEN", ""), "shared secret sent to the backend as 'Authorization: Bearer …' (SERVICE_TOKEN)")
	fs.StringVar(&c.staticDir, "static-dir", env("STATIC_DIR", "client/dist/demo"), "directory of the built demo page served at / (STATIC_DIR)")
	fs.DurationVar(&c.heartbeat, "heartbeat", envDuration("HEARTBEAT_INTERVAL", 15*time.Second), "silence before a ': ping' comment on event streams (HEARTBEAT_INTERVAL)")
	fs.DurationVar(&c.retry, "retry", envDuration("SSE_RETRY", 2*time.Second), "base reconnect delay advertised to browsers, jittered up to +50% (SSE_RETRY)")
	fs.DurationVar(&c.giveUp, "upstream-giveup", envDuration("UPSTREAM_GIVEUP", 30*time.Second), "how long the backend may be unreachable before browsers get ERROR (UPSTREAM_GIVEUP)")
	fs.DurationVar(&c.shutdownTimeout, "shutdown-timeout", envDuration("SHUTDOWN_TIMEOUT", 10*time.Second), "time given to requests to finish on shutdown (SHUTDOWN_TIMEOUT)")
	fs.TextVar(&c.logLevel, "log-level", levelFromEnv(), "debug, info, warn or error (LOG_LEVEL)")
	if err := fs.Parse(args); err != nil {
		return c, fmt.Errorf("parse flags: %w", err)
	}
	return c, nil
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	cfg, err := parseFlags(args, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	} else if err != nil {
		return err
	}
	log := newLogger(stdout, cfg.logLevel)

	be, err := backend.New(cfg.backendURL, cfg.serviceToken)
	if err != nil {
		return err
	}
	metrics := httpapi.NewMetrics()
	hub := relay.NewHub(be.OpenEvents, relay.Config{
		GiveUp:     cfg.giveUp,
		MinBackoff: 100 * time.Millisecond,
		MaxBackoff: 5 * time.Second,
		Buffer:     64,
	}, metrics, log)
	defer hub.Close()
	api := httpapi.New(httpapi.Config{
		Backend: be, Hub: hub, Metrics: metrics, Logger: log,
		StaticDir: cfg.staticDir, Heartbeat: cfg.heartbeat, Retry: cfg.retry,
	})

	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	// No WriteTimeout: it would cut event streams. Slow headers are bounded.
	srv := &http.Server{Handler: api, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	srv.RegisterOnShutdown(api.CloseStreams)
	log.Info("bff listening", "addr", ln.Addr().String(), "backend", cfg.backendURL, "staticDir", cfg.staticDir)
	return serve(ctx, srv, ln, cfg.shutdownTimeout)
}

// serve runs srv until ctx is done, then shuts it down within timeout.
func serve(ctx context.Context, srv *http.Server, ln net.Listener, timeout time.Duration) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}

// newLogger logs text on a terminal and JSON otherwise (containers, files).
func newLogger(w io.Writer, level slog.Level) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			return slog.New(slog.NewTextHandler(w, opts))
		}
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

func env(key, def string) string {
	if v, ok := os.LookupEnv(key); ok && v != "" {
		return v
	}
	return def
}

func envDuration(key string, def time.Duration) time.Duration {
	if d, err := time.ParseDuration(os.Getenv(key)); err == nil {
		return d
	}
	return def
}

func levelFromEnv() slog.Level {
	var l slog.Level
	if err := l.UnmarshalText([]byte(os.Getenv("LOG_LEVEL"))); err != nil {
		return slog.LevelInfo
	}
	return l
}
