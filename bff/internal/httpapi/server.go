// Package httpapi is the BFF's HTTP surface: the browser-facing /api routes
// (proxied to the backend as the browser's session), the relayed per-job
// and per-session event streams, the demo page, health and metrics.
// Handlers return errors; handle answers them through errorTable
// (errors.go), the one place the BFF's own errors become statuses. Backend
// answers are relayed as sent.
package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/exportstream/exportstream/bff/internal/backend"
	"github.com/exportstream/exportstream/bff/internal/relay"
	"github.com/exportstream/exportstream/bff/internal/session"
	"github.com/exportstream/exportstream/bff/internal/stream"
)

// maxBodyBytes bounds what the BFF forwards for a create request.
const maxBodyBytes = 64 << 10

// Config is what the HTTP layer needs.
type Config struct {
	Backend  *backend.Client
	Hub      *relay.Hub
	Sessions *session.Manager
	Metrics  *Metrics
	Logger   *slog.Logger
	// StaticDir holds the built demo page; empty or missing serves a hint.
	StaticDir string
	Heartbeat time.Duration
	Retry     time.Duration
	// WriteTimeout disconnects a browser whose stream writes stay blocked
	// this long (it stopped reading); it then reconnects and resumes.
	WriteTimeout time.Duration
	// ResponseWriteTimeout bounds each write of every other response (a
	// download, a list): a browser that stopped reading is cut off and
	// the backend request behind it cancelled, instead of holding a
	// goroutine and a backend connection for good. The deadline moves on
	// with every write, so a slow download that keeps moving is not cut.
	// 0: no bound.
	ResponseWriteTimeout time.Duration
	// AllowedOrigins may call state-changing routes and get CORS with
	// credentials, besides the BFF's own origin.
	AllowedOrigins []string
	// MaxStreamsPerSession and MaxStreams bound open event streams.
	MaxStreamsPerSession, MaxStreams int
	// CreateRate (per second) and CreateBurst bound a session's creates.
	CreateRate  float64
	CreateBurst int
	// TrustedProxies are the peers whose X-Forwarded-For is believed when
	// finding a request's client address (clientaddr.go).
	TrustedProxies []netip.Prefix
	// Per client address: new sessions and creates (rate a second, 0 for
	// no limit, and burst), and open event streams (0: no cap).
	AddressSessionRate   float64
	AddressSessionBurst  int
	AddressCreateRate    float64
	AddressCreateBurst   int
	MaxStreamsPerAddress int
	// Now is the rate limits' clock; nil: time.Now.
	Now func() time.Time
	// MultiplexResync re-lists a session's jobs this often on each open
	// /api/events stream, to join jobs created through another BFF
	// instance; 0: only jobs created through this one are joined live.
	MultiplexResync time.Duration
	// Scenarios allows ?fault= on event streams (relayfault.go); off, it
	// gets 400 SCENARIOS_DISABLED.
	Scenarios bool
	// GiveUp is the relay's UPSTREAM_GIVEUP, the longest a fault may wait.
	GiveUp time.Duration
}

// Server serves the BFF.
type Server struct {
	Config
	router    *gin.Engine
	streams   *streamLimits
	creates   *rateLimiter // per session
	byAddr    addressLimiters
	feeds     *feeds
	resyncs   *resyncs
	pool      *stream.Pool
	closeOnce sync.Once
	closing   chan struct{}
	stop      context.CancelFunc // ends the resync loop and its requests
	loops     sync.WaitGroup
}

// New returns the BFF's HTTP handler; CloseStreams releases it.
func New(cfg Config) (*Server, error) {
	gin.SetMode(gin.ReleaseMode)
	pool, err := stream.NewPool(stream.Config{
		Heartbeat: cfg.Heartbeat, WriteTimeout: cfg.WriteTimeout, Logger: cfg.Logger,
		SlowDisconnect: cfg.Metrics.slowDisconnects.Inc,
		Stalled:        cfg.Metrics.streamStalls.Inc,
	})
	if err != nil {
		return nil, fmt.Errorf("stream pool: %w", err)
	}
	ctx, stop := context.WithCancel(context.Background())
	s := &Server{
		Config:  cfg,
		streams: newStreamLimits(cfg.MaxStreamsPerSession, cfg.MaxStreamsPerAddress, cfg.MaxStreams),
		creates: newRateLimiter(cfg.CreateRate, cfg.CreateBurst, cfg.Now),
		byAddr:  newAddressLimiters(cfg),
		feeds:   newFeeds(),
		resyncs: &resyncs{streams: make(map[*sessionStream]struct{})},
		pool:    pool,
		closing: make(chan struct{}),
		stop:    stop,
	}
	cfg.Metrics.streamsMax.Set(float64(cfg.MaxStreams))
	if cfg.MultiplexResync > 0 {
		s.loops.Go(func() { s.resyncs.run(ctx, cfg.MultiplexResync) })
	}
	r := gin.New()
	r.Use(s.handle(refuseOverBudget), gin.CustomRecoveryWithWriter(io.Discard, s.recovered), s.boundWrites, securityHeaders, s.cors, s.loadSession)
	r.GET("/healthz", func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"status": "ok"}) })
	r.GET("/readyz", s.handle(s.ready))
	r.GET("/metrics", gin.WrapH(promhttp.HandlerFor(cfg.Metrics.Registry, promhttp.HandlerOpts{})))

	r.GET("/api/events", s.handle(s.sessionEvents))
	checkOrigin := s.handle(s.checkOrigin)
	r.POST("/api/session", checkOrigin, s.handle(s.newSession))
	api := r.Group("/api/exports")
	api.POST("", checkOrigin, s.handle(s.create))
	api.GET("", s.handle(s.list))
	api.GET("/:code", s.withCode(s.get))
	api.DELETE("/:code", checkOrigin, s.withCode(s.cancel))
	api.GET("/:code/events", s.withCode(s.events))
	api.GET("/:code/file", s.withCode(s.file))
	r.NoRoute(s.static())
	s.router = r
	return s, nil
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.router.ServeHTTP(w, r) }

// CloseStreams ends every open browser stream cleanly, turns /readyz to
// 503 and waits for the streams' goroutines; browsers reconnect (to this
// or another instance) and resume by Last-Event-ID. Register it with
// http.Server.RegisterOnShutdown, and call it once more after Shutdown:
// a second call returns when the first is done.
func (s *Server) CloseStreams() {
	s.closeOnce.Do(func() {
		close(s.closing)
		s.stop()
		s.pool.Close()
		s.loops.Wait()
	})
}

// boundWrites gives every write of a response ResponseWriteTimeout from
// its start. Event streams are left alone: the stream pool bounds their
// writes, and the per-job one may wait a heartbeat before its first.
func (s *Server) boundWrites(c *gin.Context) {
	if s.ResponseWriteTimeout > 0 && !strings.HasSuffix(c.FullPath(), "/events") {
		c.Writer = &deadlineWriter{ResponseWriter: c.Writer, rc: http.NewResponseController(c.Writer), timeout: s.ResponseWriteTimeout}
	}
}

// deadlineWriter moves the connection's write deadline before each write:
// the bound is on a browser that stopped reading, not on a long download.
type deadlineWriter struct {
	gin.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
}

func (w *deadlineWriter) Write(p []byte) (int, error) {
	_ = w.rc.SetWriteDeadline(time.Now().Add(w.timeout))
	return w.ResponseWriter.Write(p)
}

func (w *deadlineWriter) WriteString(s string) (int, error) {
	_ = w.rc.SetWriteDeadline(time.Now().Add(w.timeout))
	return w.ResponseWriter.WriteString(s)
}

// Unwrap lets http.ResponseController reach the connection.
func (w *deadlineWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// recovered answers a panic as an unknown error: 500, logged by writeError.
func (s *Server) recovered(c *gin.Context, err any) {
	s.writeError(c, fmt.Errorf("panic serving request: %v", err))
}

// ready says whether this instance should get traffic: not shutting down
// and the backend answering.
func (s *Server) ready(c *gin.Context) error {
	select {
	case <-s.closing:
		return errShuttingDown
	default:
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), 2*time.Second)
	defer cancel()
	resp, err := s.Backend.Do(ctx, http.MethodGet, "/readyz", "", nil, nil)
	if err != nil {
		return fmt.Errorf("%w: %w", errBackend, err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%w: the backend's /readyz answered %d", errBackend, resp.StatusCode)
	}
	c.JSON(http.StatusOK, gin.H{"status": "ready"})
	return nil
}

// withCode checks the :code parameter before the handler runs, so a bad
// code never reaches the backend.
func (s *Server) withCode(h func(c *gin.Context, code string) error) gin.HandlerFunc {
	return s.handle(func(c *gin.Context) error {
		u, err := uuid.Parse(c.Param("code"))
		if err != nil || len(c.Param("code")) != 36 {
			return errInvalidCode
		}
		return h(c, u.String())
	})
}

func (s *Server) create(c *gin.Context) error {
	sid, err := s.sessionFor(c)
	if err != nil {
		return err
	}
	if err := s.allowCreate(c, sid); err != nil {
		return err
	}
	body := http.MaxBytesReader(c.Writer, c.Request.Body, maxBodyBytes)
	resp, err := s.roundTrip(c.Request.Context(), c, http.MethodPost, "/v1/exports", sid, body, "Content-Type", "Idempotency-Key")
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	// Read the (small) answer to tell this session's open /api/events
	// streams about the new export.
	out, err := io.ReadAll(io.LimitReader(resp.Body, maxBodyBytes))
	if err != nil {
		return fmt.Errorf("%w: read the created export: %w", errBackend, err)
	}
	var created struct {
		Code string `json:"code"`
	}
	if resp.StatusCode == http.StatusAccepted && json.Unmarshal(out, &created) == nil {
		s.feeds.notify(sid, created.Code)
	}
	return copyResponse(c, resp, bytes.NewReader(out))
}

// list starts the session if there is none (a page's first call), so
// the page's concurrent first creates all share it.
func (s *Server) list(c *gin.Context) error {
	if _, err := requireSession(c); errors.Is(err, errNotFound) {
		if _, err := s.sessionFor(c); err != nil {
			return err
		}
		c.JSON(http.StatusOK, gin.H{"exports": []struct{}{}}) // a new session has no exports
		return nil
	}
	return s.forward(c, http.MethodGet, "/v1/exports")
}

func (s *Server) get(c *gin.Context, code string) error {
	return s.forward(c, http.MethodGet, "/v1/exports/"+code)
}

// cancel cancels a running export or deletes a finished one.
func (s *Server) cancel(c *gin.Context, code string) error {
	return s.forward(c, http.MethodDelete, "/v1/exports/"+code)
}

// file streams the download from the backend; Range and conditional
// requests pass through, so resumable downloads work end to end.
func (s *Server) file(c *gin.Context, code string) error {
	return s.forward(c, http.MethodGet, "/v1/exports/"+code+"/file", "Range", "If-Range", "If-None-Match", "If-Modified-Since")
}

// responseHeaders are the backend response headers a browser needs.
var responseHeaders = []string{
	"Content-Type", "Content-Length", "Content-Disposition", "Content-Range", "Accept-Ranges",
	"ETag", "Last-Modified", "Cache-Control", "Location", "Retry-After",
}

// forward sends the request to the backend as the browser's session and
// streams the answer back. A browser without a session owns no export:
// errNotFound.
func (s *Server) forward(c *gin.Context, method, path string, requestHeaders ...string) error {
	sid, err := requireSession(c)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(c.Request.Context())
	defer cancel()
	resp, err := s.roundTrip(ctx, c, method, path, sid, nil, requestHeaders...)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	if err := copyResponse(c, resp, resp.Body); err != nil {
		cancel() // the browser went away or was cut off: so does the backend request
		return err
	}
	return nil
}

// roundTrip sends the request with the named request headers and returns
// the backend's answer for the browser: backend errors are passed on as
// sent (the same JSON shape). Faults of our own (unreachable backend,
// rejected service token, a backend fault the browser cannot act on) are
// errBackend, a 502 that names no backend detail.
func (s *Server) roundTrip(ctx context.Context, c *gin.Context, method, path, owner string, body io.Reader, requestHeaders ...string) (*http.Response, error) {
	h := http.Header{}
	for _, k := range requestHeaders {
		if v := c.Request.Header.Values(k); len(v) > 0 {
			h[http.CanonicalHeaderKey(k)] = v
		}
	}
	resp, err := s.Backend.Do(ctx, method, path, owner, body, h)
	if err != nil {
		if _, tooBig := errors.AsType[*http.MaxBytesError](err); tooBig {
			return nil, fmt.Errorf("%w: %w", errBodyTooLarge, err)
		}
		return nil, fmt.Errorf("%w: %w", errBackend, err)
	}
	if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode >= 500 && !passedOn(resp.StatusCode) {
		_ = resp.Body.Close()
		return nil, fmt.Errorf("%w: the backend refused %s %s with %d", errBackend, method, path, resp.StatusCode)
	}
	return resp, nil
}

// passedOn reports whether a backend 5xx means something to the browser:
// 503 (busy, shutting down: retry later) and 507 (the backend's disk is
// full: nothing was stored, retry later). Any other is the backend's
// fault, a 502.
func passedOn(status int) bool {
	return status == http.StatusServiceUnavailable || status == http.StatusInsufficientStorage
}

// copyResponse passes the backend's answer on; an error is the browser's
// write failing (it went away, or boundWrites cut it off) or the
// backend's body breaking.
func copyResponse(c *gin.Context, resp *http.Response, body io.Reader) error {
	for _, k := range responseHeaders {
		if v := resp.Header.Values(k); len(v) > 0 {
			c.Writer.Header()[k] = v
		}
	}
	// The backend's status is the answer from here on: an error while
	// copying ends the response (handle), it does not replace it.
	c.Status(resp.StatusCode)
	c.Writer.WriteHeaderNow()
	if _, err := io.Copy(c.Writer, body); err != nil {
		return fmt.Errorf("copy the response: %w", err)
	}
	return nil
}

// static serves the built demo page for any GET outside /api.
func (s *Server) static() gin.HandlerFunc {
	files := http.FileServer(http.Dir(s.StaticDir))
	return s.handle(func(c *gin.Context) error {
		if c.Request.Method != http.MethodGet && c.Request.Method != http.MethodHead {
			return &apiError{http.StatusMethodNotAllowed, "METHOD_NOT_ALLOWED", "method " + c.Request.Method + " is not allowed here"}
		}
		if _, err := os.Stat(filepath.Join(s.StaticDir, "index.html")); s.StaticDir == "" || err != nil {
			if c.Request.URL.Path == "/" {
				c.Data(http.StatusOK, "text/html; charset=utf-8", []byte(notBuiltPage))
				return nil
			}
			return &apiError{http.StatusNotFound, "NO_ROUTE", "no such endpoint: " + c.Request.URL.Path}
		}
		files.ServeHTTP(c.Writer, c.Request)
		return nil
	})
}

const notBuiltPage = `<!doctype html><title>exportstream</title>
<p>The demo page is not built. Run <code>make build</code> (or <code>make demo</code>) and reload.</p>`
