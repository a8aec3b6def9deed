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
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/exportstream/exportstream/bff/internal/backend"
	"github.com/exportstream/exportstream/bff/internal/connlimit"
	"github.com/exportstream/exportstream/bff/internal/httpapi"
	"github.com/exportstream/exportstream/bff/internal/relay"
	"github.com/exportstream/exportstream/bff/internal/session"
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
		fmt.Fprintln(os.Stderr, "bff:", err)
		os.Exit(1)
	}
}

// The open-file budget (connlimit.Budget): files the process keeps for
// itself besides its backend connections and refusals (stdio, listener,
// epoll sets, the runtime's cgroup files: 13 idle), and connections kept
// from event streams for other requests. At this machine's 20,000 files
// and 32 backend connections: 19,936 connections, of which 19,904 may be
// streams.
const (
	ownFiles       = 16
	streamHeadroom = 32
)

type config struct {
	addr                 string
	backendURL           string
	serviceToken         string
	staticDir            string
	sessionSecret        string
	cookieSecure         bool
	allowedOrigins       string
	maxStreamsPerSession int
	maxStreams           int
	backendConns         int
	createRate           float64
	createBurst          int
	heartbeat            time.Duration
	retry                time.Duration
	giveUp               time.Duration
	linger               time.Duration
	upstreamIdle         time.Duration
	writeTimeout         time.Duration
	responseWriteTimeout time.Duration
	shutdownTimeout      time.Duration
	readHeaderTimeout    time.Duration
	multiplexResync      time.Duration
	logLevel             slog.Level
	healthcheck          bool
}

func parseFlags(args []string, stdout io.Writer) (config, error) {
	var c config
	e := envReader{}
	fs := flag.NewFlagSet("bff", flag.ContinueOnError)
	fs.SetOutput(stdout)
	fs.StringVar(&c.addr, "addr", e.str("BFF_ADDR", ":8080"), "listen address (BFF_ADDR)")
	fs.StringVar(&c.backendURL, "backend-url", e.str("BACKEND_URL", "http://localhost:8081"), "base URL of the export backend (BACKEND_URL)")
	fs.StringVar(&c.serviceToken, "service-token", e.str("SERVICE_TOKEN", ""), "shared secret sent to the backend as 'Authorization: Bearer …' (SERVICE_TOKEN)")
	fs.StringVar(&c.staticDir, "static-dir", e.str("STATIC_DIR", "client/dist/demo"), "directory of the built demo page served at / (STATIC_DIR)")
	fs.StringVar(&c.sessionSecret, "session-secret", e.str("SESSION_SECRET", ""), "at least 32 bytes signing session cookies; empty: random, sessions end with the process (SESSION_SECRET)")
	fs.BoolVar(&c.cookieSecure, "cookie-secure", e.boolean("COOKIE_SECURE", false), "mark the session cookie Secure (behind HTTPS) (COOKIE_SECURE)")
	fs.StringVar(&c.allowedOrigins, "allowed-origins", e.str("ALLOWED_ORIGINS", ""), "comma-separated origins, besides the BFF's own, that may change exports and get CORS (ALLOWED_ORIGINS)")
	fs.IntVar(&c.maxStreamsPerSession, "max-streams-per-session", e.integer("MAX_STREAMS_PER_SESSION", 20), "open event streams per session before 429 (MAX_STREAMS_PER_SESSION)")
	fs.IntVar(&c.maxStreams, "max-streams", e.integer("MAX_STREAMS", 0), "open event streams in all before 503; 0: as many as the open-file limit allows, less headroom for other requests (MAX_STREAMS)")
	fs.IntVar(&c.backendConns, "backend-max-conns", e.integer("BACKEND_MAX_CONNS", backend.DefaultMaxConns), "connections to the backend at most (its event stream, API calls, downloads); each is a file taken from the streams' budget (BACKEND_MAX_CONNS)")
	fs.Float64Var(&c.createRate, "create-rate", e.float("CREATE_RATE", 5), "exports a session may start per second, sustained; 0 for no limit (CREATE_RATE)")
	fs.IntVar(&c.createBurst, "create-burst", e.integer("CREATE_BURST", 20), "exports a session may start at once (CREATE_BURST)")
	fs.DurationVar(&c.heartbeat, "heartbeat", e.duration("HEARTBEAT_INTERVAL", 15*time.Second), "silence before a ': ping' comment on event streams (HEARTBEAT_INTERVAL)")
	fs.DurationVar(&c.retry, "retry", e.duration("SSE_RETRY", 2*time.Second), "base reconnect delay advertised to browsers, jittered up to +50% (SSE_RETRY)")
	fs.DurationVar(&c.giveUp, "upstream-giveup", e.duration("UPSTREAM_GIVEUP", 30*time.Second), "how long the backend may be unreachable before browsers get ERROR (UPSTREAM_GIVEUP)")
	fs.DurationVar(&c.upstreamIdle, "upstream-idle-timeout", e.duration("UPSTREAM_IDLE_TIMEOUT", 45*time.Second), "reconnect an upstream that sent nothing (not even a heartbeat) this long; keep it above the backend's heartbeat (UPSTREAM_IDLE_TIMEOUT)")
	fs.DurationVar(&c.linger, "linger", e.duration("UPSTREAM_LINGER", 5*time.Second), "how long an upstream stays open after its last browser left (UPSTREAM_LINGER)")
	fs.DurationVar(&c.writeTimeout, "write-timeout", e.duration("STREAM_WRITE_TIMEOUT", 10*time.Second), "a browser whose stream writes block this long is disconnected (STREAM_WRITE_TIMEOUT)")
	fs.DurationVar(&c.responseWriteTimeout, "response-write-timeout", e.duration("RESPONSE_WRITE_TIMEOUT", 30*time.Second), "a browser whose write of a response other than an event stream (a download, a list) blocks this long is cut off, and the backend request behind it cancelled; each write gets it anew, so a slow download that keeps moving is not cut; 0 turns it off (RESPONSE_WRITE_TIMEOUT)")
	fs.DurationVar(&c.shutdownTimeout, "shutdown-timeout", e.duration("SHUTDOWN_TIMEOUT", 10*time.Second), "time given to requests to finish on shutdown (SHUTDOWN_TIMEOUT)")
	fs.DurationVar(&c.multiplexResync, "multiplex-resync", e.duration("MULTIPLEX_RESYNC", 10*time.Second), "how often an open /api/events stream re-lists its session's jobs, to join those created through another BFF instance; 0 turns it off (MULTIPLEX_RESYNC)")
	fs.DurationVar(&c.readHeaderTimeout, "read-header-timeout", e.duration("READ_HEADER_TIMEOUT", 10*time.Second), "a client must send a request's headers within this, or it is cut off (slowloris) (READ_HEADER_TIMEOUT)")
	fs.TextVar(&c.logLevel, "log-level", e.level("LOG_LEVEL"), "debug, info, warn or error (LOG_LEVEL)")
	fs.BoolVar(&c.healthcheck, "healthcheck", false, "GET /healthz of the server on -addr (via 127.0.0.1) and exit 0 if it answers 200, 1 otherwise: the container healthcheck")
	if err := errors.Join(e.errs...); err != nil {
		return c, err
	}
	if err := fs.Parse(args); err != nil {
		return c, fmt.Errorf("parse flags: %w", err)
	}
	if c.heartbeat <= 0 || c.retry <= 0 || c.giveUp <= 0 || c.readHeaderTimeout <= 0 {
		return c, errors.New("-heartbeat, -retry, -upstream-giveup and -read-header-timeout must be positive")
	}
	if c.responseWriteTimeout < 0 {
		return c, errors.New("-response-write-timeout must not be negative")
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

	be, err := backend.NewLimited(cfg.backendURL, cfg.serviceToken, cfg.backendConns)
	if err != nil {
		return err
	}
	secret := []byte(cfg.sessionSecret)
	if len(secret) == 0 {
		log.Warn("SESSION_SECRET is not set: using a random one, so sessions end when this process does and do not span instances")
		secret = session.RandomSecret()
	}
	sessions, err := session.New(secret, cfg.cookieSecure, 24*time.Hour)
	if err != nil {
		return err
	}
	files, err := connlimit.FileLimit()
	if err != nil {
		return err
	}
	conns, streams := connlimit.Budget(files, ownFiles+cfg.backendConns+connlimit.Refusing, streamHeadroom, cfg.maxStreams)
	log.Info("open-file budget", "files", files, "connections", conns, "streams", streams)
	metrics := httpapi.NewMetrics()
	hub := relay.NewHub(be, relay.Config{
		GiveUp:      cfg.giveUp,
		MinBackoff:  100 * time.Millisecond,
		MaxBackoff:  5 * time.Second,
		Buffer:      64,
		Linger:      cfg.linger,
		IdleTimeout: cfg.upstreamIdle,
	}, metrics, log)
	defer hub.Close()
	api, err := httpapi.New(httpapi.Config{
		Backend: be, Hub: hub, Sessions: sessions, Metrics: metrics, Logger: log,
		StaticDir: cfg.staticDir, Heartbeat: cfg.heartbeat, Retry: cfg.retry, WriteTimeout: cfg.writeTimeout,
		ResponseWriteTimeout: cfg.responseWriteTimeout,
		AllowedOrigins:       splitList(cfg.allowedOrigins),
		MaxStreamsPerSession: cfg.maxStreamsPerSession, MaxStreams: streams,
		CreateRate: cfg.createRate, CreateBurst: cfg.createBurst,
		MultiplexResync: cfg.multiplexResync,
	})
	if err != nil {
		return err
	}
	defer api.CloseStreams() // after Shutdown: waits for the streams' goroutines, before the hub closes

	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	// Past the open-file budget a connection is answered 503 at once
	// rather than left waiting in the backlog.
	lim := connlimit.NewListener(ln, conns)
	defer func() { _ = lim.Close() }()
	// No WriteTimeout: it would cut event streams and long downloads (the
	// streams bound each write themselves, other responses get
	// -response-write-timeout per write). Slow headers are bounded.
	srv := &http.Server{Handler: api, ReadHeaderTimeout: cfg.readHeaderTimeout, IdleTimeout: 2 * time.Minute, ConnContext: connlimit.ConnContext}
	srv.RegisterOnShutdown(api.CloseStreams)
	log.Info("bff listening", "addr", ln.Addr().String(), "backend", cfg.backendURL, "staticDir", cfg.staticDir)
	return serve(ctx, srv, lim, cfg.shutdownTimeout)
}

func splitList(s string) []string {
	var out []string
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, strings.TrimSuffix(part, "/"))
		}
	}
	return out
}

// healthcheck asks the server listening on addr for /healthz. Container
// healthchecks run it (`bff -healthcheck`): the image is FROM scratch, with no
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
	return parseEnv(e, key, def, strconv.Atoi, "an integer")
}

func (e *envReader) float(key string, def float64) float64 {
	return parseEnv(e, key, def, func(v string) (float64, error) { return strconv.ParseFloat(v, 64) }, "a number")
}

func (e *envReader) boolean(key string, def bool) bool {
	return parseEnv(e, key, def, strconv.ParseBool, "a boolean")
}

func (e *envReader) duration(key string, def time.Duration) time.Duration {
	return parseEnv(e, key, def, time.ParseDuration, "a duration like 30s")
}

func (e *envReader) level(key string) slog.Level {
	return parseEnv(e, key, slog.LevelInfo, func(v string) (slog.Level, error) {
		var l slog.Level
		err := l.UnmarshalText([]byte(v))
		return l, err
	}, "a log level")
}

func parseEnv[T any](e *envReader, key string, def T, parse func(string) (T, error), what string) T {
	v := os.Getenv(key)
	if v == "" {
		return def
	}
	x, err := parse(v)
	if err != nil {
		e.errs = append(e.errs, fmt.Errorf("%s=%q: not %s", key, v, what))
		return def
	}
	return x
}
