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
	"runtime"
	"runtime/debug"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/exportstream/exportstream/backend/internal/eventmux"
	"github.com/exportstream/exportstream/backend/internal/httpapi"
	"github.com/exportstream/exportstream/backend/internal/store"
	"github.com/exportstream/exportstream/backend/internal/worker"
)

func main() {
	// Memory per user first: the heap may grow to 1.5× its live data
	// between collections, not 2×, unless GOGC says otherwise
	// (BENCHMARKS.md: ~25 % less memory per idle user).
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(50)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "backend:", err)
		os.Exit(1)
	}
}

type config struct {
	addr              string
	dataDir           string
	memory            bool
	workers           int
	queueSize         int
	maxActivePerOwner int
	retention         time.Duration
	progressInterval  time.Duration
	progressCkpt      time.Duration
	heartbeat         time.Duration
	retry             time.Duration
	serviceToken      string
	shutdownTimeout   time.Duration
	logLevel          slog.Level
	healthcheck       bool
	redisURL          string
	claimIdle         time.Duration
	diskReserve       int
	maxSubscriptions  int
}

func parseFlags(args []string, stdout io.Writer) (config, error) {
	var c config
	e := envReader{}
	fs := flag.NewFlagSet("backend", flag.ContinueOnError)
	fs.SetOutput(stdout)
	fs.StringVar(&c.addr, "addr", e.str("BACKEND_ADDR", ":8081"), "listen address (BACKEND_ADDR)")
	dataDir, set := os.LookupEnv("DATA_DIR")
	if !set {
		dataDir = "data"
	}
	fs.StringVar(&c.dataDir, "data-dir", dataDir, "directory of the embedded store and the files; empty: in memory (DATA_DIR)")
	fs.BoolVar(&c.memory, "memory", e.boolean("MEMORY", false), "keep everything in memory, nothing survives a restart (MEMORY)")
	fs.IntVar(&c.workers, "workers", e.integer("WORKERS", runtime.NumCPU()), "exports generated at once (WORKERS)")
	fs.IntVar(&c.queueSize, "queue-size", e.integer("QUEUE_SIZE", 1000), "exports waiting for a worker before creates get 503 (QUEUE_SIZE)")
	fs.IntVar(&c.maxActivePerOwner, "max-active-per-owner", e.integer("MAX_ACTIVE_PER_OWNER", 100), "unfinished exports one owner may have before creates get 429; 0 for no cap (MAX_ACTIVE_PER_OWNER)")
	fs.DurationVar(&c.retention, "retention", e.duration("RETENTION", time.Hour), "how long finished exports and their files are kept (RETENTION)")
	fs.DurationVar(&c.progressInterval, "progress-interval", e.duration("PROGRESS_INTERVAL", 100*time.Millisecond), "at most one progress event of a job per this much of its schedule (PROGRESS_INTERVAL)")
	fs.DurationVar(&c.progressCkpt, "progress-checkpoint", e.duration("PROGRESS_CHECKPOINT", store.DefaultProgressCheckpoint), "embedded store: progress events are sent at once and written to disk this often (a crash loses at most this much progress; seqs still never repeat); 0: each written before it is sent (PROGRESS_CHECKPOINT)")
	fs.DurationVar(&c.heartbeat, "heartbeat", e.duration("HEARTBEAT_INTERVAL", 15*time.Second), "silence before a ': ping' comment on event streams (HEARTBEAT_INTERVAL)")
	fs.DurationVar(&c.retry, "retry", e.duration("SSE_RETRY", 2*time.Second), "reconnect delay advertised to EventSource clients (SSE_RETRY)")
	fs.StringVar(&c.serviceToken, "service-token", e.str("SERVICE_TOKEN", ""), "when set, required as 'Authorization: Bearer …' on every /v1 call (SERVICE_TOKEN)")
	fs.DurationVar(&c.shutdownTimeout, "shutdown-timeout", e.duration("SHUTDOWN_TIMEOUT", 10*time.Second), "time given to requests to finish on shutdown (SHUTDOWN_TIMEOUT)")
	fs.TextVar(&c.logLevel, "log-level", e.level("LOG_LEVEL"), "debug, info, warn or error (LOG_LEVEL)")
	fs.BoolVar(&c.healthcheck, "healthcheck", false, "GET /healthz of the server on -addr (via 127.0.0.1) and exit 0 if it answers 200, 1 otherwise: the container healthcheck")
	fs.StringVar(&c.redisURL, "redis-url", e.str("REDIS_URL", ""), "redis://… : share jobs, events and work with other replicas through Redis; DATA_DIR must then be a directory they all share (REDIS_URL)")
	fs.DurationVar(&c.claimIdle, "claim-idle", e.duration("REDIS_CLAIM_IDLE", 30*time.Second), "with Redis: a running export whose replica is silent this long is taken over by another (REDIS_CLAIM_IDLE)")
	fs.IntVar(&c.diskReserve, "disk-reserve", e.integer("DISK_RESERVE", 4<<20), "bytes of the data directory's disk kept in reserve: given up when the disk fills so running exports can still be marked FAILED; creates get 507 until it can be written back; 0 for none (DISK_RESERVE)")
	fs.IntVar(&c.maxSubscriptions, "max-subscriptions-per-stream", e.integer("MAX_SUBSCRIPTIONS_PER_STREAM", eventmux.DefaultMaxSubscriptions), "codes one multiplexed event stream (GET /v1/events) may have subscribed before more get 429 (MAX_SUBSCRIPTIONS_PER_STREAM)")
	if err := errors.Join(e.errs...); err != nil {
		return c, err
	}
	if err := fs.Parse(args); err != nil {
		return c, fmt.Errorf("parse flags: %w", err)
	}
	switch {
	case c.diskReserve < 0:
		return c, errors.New("-disk-reserve must not be negative")
	case c.progressCkpt < 0:
		return c, errors.New("-progress-checkpoint must not be negative")
	case c.workers < 1 || c.queueSize < 1 || c.maxSubscriptions < 1:
		return c, errors.New("-workers, -queue-size and -max-subscriptions-per-stream must be at least 1")
	case c.retention <= 0 || c.progressInterval < 0 || c.heartbeat <= 0 || c.retry <= 0:
		return c, errors.New("-retention, -heartbeat and -retry must be positive")
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
	if cfg.healthcheck {
		return healthcheck(ctx, cfg.addr)
	}
	log := newLogger(stdout, cfg.logLevel)

	st, filesDir, cleanup, err := openStore(cfg)
	if err != nil {
		return err
	}
	defer cleanup()
	queue, err := sharedQueue(ctx, st, cfg, log)
	if err != nil {
		return err
	}
	generation := httpapi.GenerationHistogram()
	pool, err := worker.New(st, worker.Config{
		Workers:          cfg.workers,
		QueueSize:        cfg.queueSize,
		FilesDir:         filesDir,
		ProgressInterval: cfg.progressInterval,
		Retention:        cfg.retention,
		MinFree:          int64(cfg.diskReserve),
		Durable:          !cfg.memory || cfg.redisURL != "",
		OnFinish:         httpapi.ObserveGeneration(generation),
		Queue:            queue,
	}, log)
	if err != nil {
		return err
	}
	defer pool.Close() // runs before cleanup: jobs checkpoint, then the store closes
	if err := pool.Resume(ctx); err != nil {
		return err
	}
	api := httpapi.New(httpapi.Config{
		Store: st, Pool: pool, Logger: log, Heartbeat: cfg.heartbeat, Retry: cfg.retry,
		ServiceToken: cfg.serviceToken, MaxActivePerOwner: cfg.maxActivePerOwner,
		Mux: eventHub(st, cfg, log),
	})
	api.Register(generation)

	sweepCtx, stopSweeper := context.WithCancel(ctx)
	var housekeeping sync.WaitGroup
	housekeeping.Go(func() { pool.RunSweeper(sweepCtx, min(cfg.retention/10, time.Minute)) })
	if rq, ok := queue.(*worker.RedisQueue); ok {
		housekeeping.Go(func() { rq.RunReconciler(sweepCtx, st.Unfinished) })
	}
	defer func() { stopSweeper(); housekeeping.Wait() }()

	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	// No WriteTimeout: it would cut event streams. Slow headers are bounded.
	srv := &http.Server{Handler: api, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	srv.RegisterOnShutdown(api.CloseStreams)
	log.Info("backend listening", "addr", ln.Addr().String(), "dataDir", filesDir, "memory", cfg.memory, "workers", cfg.workers)
	return serve(ctx, srv, ln, cfg.shutdownTimeout)
}

// openStore opens the durable store in the data directory, or a memory
// store with files in a temporary directory removed at exit.
func openStore(cfg config) (store.Store, string, func(), error) {
	if cfg.redisURL != "" {
		return openRedis(cfg)
	}
	if cfg.memory || cfg.dataDir == "" {
		dir, err := os.MkdirTemp("", "exportstream-files-")
		if err != nil {
			return nil, "", nil, fmt.Errorf("files dir: %w", err)
		}
		return store.NewMemory(), dir, func() { _ = os.RemoveAll(dir) }, nil
	}
	st, err := store.Open(cfg.dataDir, store.WithDiskReserve(int64(cfg.diskReserve)), store.WithProgressCheckpoint(cfg.progressCkpt))
	if err != nil {
		return nil, "", nil, err
	}
	return st, filepath.Join(cfg.dataDir, "files"), func() { _ = st.Close() }, nil
}

// healthcheck asks the server listening on addr for /healthz. Container
// healthchecks run it (`backend -healthcheck`): the image is FROM scratch, with no
// shell or curl.
func healthcheck(ctx context.Context, addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+net.JoinHostPort(host, port)+"/healthz", nil)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: %s answered %s", req.URL, resp.Status)
	}
	return nil
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

// envReader reads environment fallbacks for flags, collecting malformed
// values as errors instead of silently using the default.
type envReader struct{ errs []error }

func (e *envReader) str(key, def string) string {
	if v, ok := os.LookupEnv(key); ok && v != "" {
		return v
	}
	return def
}

func (e *envReader) integer(key string, def int) int {
	v := os.Getenv(key)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		e.errs = append(e.errs, fmt.Errorf("%s=%q: not an integer", key, v))
		return def
	}
	return n
}

func (e *envReader) boolean(key string, def bool) bool {
	v := os.Getenv(key)
	if v == "" {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		e.errs = append(e.errs, fmt.Errorf("%s=%q: not a boolean", key, v))
		return def
	}
	return b
}

func (e *envReader) duration(key string, def time.Duration) time.Duration {
	v := os.Getenv(key)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		e.errs = append(e.errs, fmt.Errorf("%s=%q: not a duration like 30s", key, v))
		return def
	}
	return d
}

func (e *envReader) level(key string) slog.Level {
	var l slog.Level
	if v := os.Getenv(key); v != "" {
		if err := l.UnmarshalText([]byte(v)); err != nil {
			e.errs = append(e.errs, fmt.Errorf("%s=%q: not a log level", key, v))
		}
	}
	return l
}
