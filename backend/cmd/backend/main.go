// Command backend is the export job service: it accepts exports, generates
// their files and streams their progress over SSE. It is internal: browsers
// reach it only through the BFF.
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
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/exportstream/exportstream/backend/internal/httpapi"
	"github.com/exportstream/exportstream/backend/internal/store"
	"github.com/exportstream/exportstream/backend/internal/worker"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "backend:", err)
		os.Exit(1)
	}
}

type config struct {
	addr            string
	dataDir         string
	workers         int
	queueSize       int
	heartbeat       time.Duration
	retry           time.Duration
	shutdownTimeout time.Duration
	logLevel        slog.Level
}

func parseFlags(args []string, stdout io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("backend", flag.ContinueOnError)
	fs.SetOutput(stdout)
	fs.StringVar(&c.addr, "addr", env("BACKEND_ADDR", ":8081"), "listen address (BACKEND_ADDR)")
	fs.StringVar(&c.dataDir, "data-dir", env("DATA_DIR", "data"), "directory for generated files (DATA_DIR)")
	fs.IntVar(&c.workers, "workers", envInt("WORKERS", 32), "exports generated at once (WORKERS)")
	fs.IntVar(&c.queueSize, "queue-size", envInt("QUEUE_SIZE", 1000), "exports waiting for a worker before creates get 503 (QUEUE_SIZE)")
	fs.DurationVar(&c.heartbeat, "heartbeat", envDuration("HEARTBEAT_INTERVAL", 15*time.Second), "silence before a ': ping' comment on event streams (HEARTBEAT_INTERVAL)")
	fs.DurationVar(&c.retry, "retry", envDuration("SSE_RETRY", 2*time.Second), "reconnect delay advertised to EventSource clients (SSE_RETRY)")
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

	st := store.NewMemory()
	pool, err := worker.New(st, worker.Config{
		Workers:          cfg.workers,
		QueueSize:        cfg.queueSize,
		FilesDir:         filepath.Join(cfg.dataDir, "files"),
		ProgressInterval: 100 * time.Millisecond,
	}, log)
	if err != nil {
		return err
	}
	defer pool.Close()
	api := httpapi.New(httpapi.Config{Store: st, Pool: pool, Logger: log, Heartbeat: cfg.heartbeat, Retry: cfg.retry})

	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	// No WriteTimeout: it would cut event streams. Slow headers are bounded.
	srv := &http.Server{Handler: api, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	srv.RegisterOnShutdown(api.CloseStreams)
	log.Info("backend listening", "addr", ln.Addr().String(), "dataDir", cfg.dataDir)
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

func envInt(key string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(key)); err == nil {
		return n
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
