// Package httpapi is the backend's HTTP surface: gin routes for the export
// API, the SSE event streams (written with go-sse) and the file download.
// Handlers return errors; handle answers them through errorTable
// (errors.go), the one place an error becomes a status and a JSON body.
package httpapi

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"os"
	"regexp"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/exportstream/exportstream/backend/internal/eventmux"
	"github.com/exportstream/exportstream/backend/internal/job"
	"github.com/exportstream/exportstream/backend/internal/store"
	"github.com/exportstream/exportstream/backend/internal/worker"
)

// maxBodyBytes bounds a create request; a valid one is well under 1 KiB.
const maxBodyBytes = 1 << 20

// Config is what the HTTP layer needs.
type Config struct {
	Store  store.Store
	Pool   *worker.Pool
	Logger *slog.Logger
	// Heartbeat is how long a stream may stay silent before a ": ping" comment.
	Heartbeat time.Duration
	// Retry is the reconnection delay advertised to EventSource clients.
	Retry time.Duration
	// ServiceToken, when set, must come as "Authorization: Bearer …" on /v1.
	ServiceToken string
	// MaxActivePerOwner caps an owner's unfinished jobs (429 past it); 0: no cap.
	MaxActivePerOwner int
	// Mux keeps the multiplexed event streams (GET /v1/events); nil: an
	// embedded one on Store with the default bound.
	Mux *eventmux.Hub
	// Scenarios lets a create script its export (failAt, startDelayMs, …);
	// off, such a create gets 400 SCENARIOS_DISABLED.
	Scenarios bool
}

// Server serves the export API.
type Server struct {
	Config
	log     *slog.Logger
	metrics *metrics
	router  *gin.Engine

	draining  atomic.Bool
	closeOnce sync.Once
	closing   chan struct{} // closed by CloseStreams
}

// New returns the backend's HTTP handler.
func New(cfg Config) *Server {
	gin.SetMode(gin.ReleaseMode)
	if cfg.Mux == nil {
		cfg.Mux = eventmux.New(eventmux.Config{Store: cfg.Store, Logger: cfg.Logger})
	}
	s := &Server{Config: cfg, log: cfg.Logger, closing: make(chan struct{})}
	s.metrics = newMetrics(cfg.Store, cfg.Pool, cfg.Mux)
	r := gin.New()
	r.Use(s.logRequests, gin.CustomRecoveryWithWriter(io.Discard, s.recovered))
	r.HandleMethodNotAllowed = true
	r.NoRoute(s.handle(func(c *gin.Context) error {
		return &apiError{http.StatusNotFound, "NO_ROUTE", "no such endpoint: " + c.Request.Method + " " + c.Request.URL.Path}
	}))
	r.NoMethod(s.handle(func(c *gin.Context) error {
		return &apiError{http.StatusMethodNotAllowed, "METHOD_NOT_ALLOWED", "method " + c.Request.Method + " is not allowed here"}
	}))
	r.GET("/healthz", func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"status": "ok"}) })
	r.GET("/readyz", s.handle(s.ready))
	r.GET("/metrics", gin.WrapH(promhttp.HandlerFor(s.metrics.registry, promhttp.HandlerOpts{})))

	authorize, owner := s.handle(s.authorize), s.handle(s.owner)
	v1 := r.Group("/v1/exports", authorize, owner)
	v1.POST("", s.handle(s.create))
	v1.GET("", s.handle(s.list))
	v1.GET("/:code", s.handle(s.get))
	v1.DELETE("/:code", s.handle(s.delete))
	v1.GET("/:code/events", s.handle(s.events))
	v1.GET("/:code/file", s.handle(s.file))

	// The multiplexed stream is the caller's; the owner comes per subscription.
	mux := r.Group("/v1/events", authorize)
	mux.GET("", s.handle(s.muxEvents))
	mux.PUT("/:stream/subscriptions/:code", owner, s.handle(s.subscribe))
	mux.DELETE("/:stream/subscriptions/:code", owner, s.handle(s.unsubscribe))
	s.router = r
	return s
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.router.ServeHTTP(w, r) }

// CloseStreams starts draining: /readyz answers 503 and every open event
// stream ends cleanly, so http.Server.Shutdown does not wait on them and
// clients reconnect and resume by Last-Event-ID. Register it with
// http.Server.RegisterOnShutdown.
func (s *Server) CloseStreams() {
	s.closeOnce.Do(func() {
		s.draining.Store(true)
		close(s.closing)
	})
}

func (s *Server) ready(c *gin.Context) error {
	if s.draining.Load() {
		return job.ErrUnavailable
	}
	c.JSON(http.StatusOK, gin.H{"status": "ready"})
	return nil
}

// logRequests logs every request at debug level, and those answered 5xx
// at warn. The attributes are only built when the line is logged: at the
// default info level a request costs no logging work.
func (s *Server) logRequests(c *gin.Context) {
	start := time.Now()
	c.Next()
	level := slog.LevelDebug
	if c.Writer.Status() >= 500 {
		level = slog.LevelWarn
	}
	if !s.log.Enabled(c, level) {
		return
	}
	s.log.Log(c, level, "request", "method", c.Request.Method, "path", c.Request.URL.Path,
		"status", c.Writer.Status(), "bytes", c.Writer.Size(), "took", time.Since(start), "code", c.Param("code"))
}

// recovered answers a panic as an unknown error: 500, logged by writeError.
func (s *Server) recovered(c *gin.Context, err any) {
	s.writeError(c, fmt.Errorf("panic serving request: %v", err))
}

// authorize requires the shared service token when one is configured.
func (s *Server) authorize(c *gin.Context) error {
	if s.ServiceToken == "" {
		return nil
	}
	got := []byte(c.GetHeader("Authorization"))
	want := []byte("Bearer " + s.ServiceToken)
	if subtle.ConstantTimeCompare(got, want) != 1 {
		c.Header("WWW-Authenticate", `Bearer realm="exportstream"`)
		return &apiError{http.StatusUnauthorized, "UNAUTHORIZED", "a valid service token is required"}
	}
	return nil
}

const ownerKey = "owner"

// ownerPattern keeps owner ids printable and short (the BFF sends a session id).
var ownerPattern = regexp.MustCompile(`^[\x21-\x7e]{0,128}$`)

// owner reads X-Export-Owner: every job is visible only to the owner that
// created it; others get 404, never 403, so codes leak nothing.
func (s *Server) owner(c *gin.Context) error {
	o := c.GetHeader("X-Export-Owner")
	if !ownerPattern.MatchString(o) {
		return &apiError{http.StatusBadRequest, "INVALID_OWNER", "X-Export-Owner must be at most 128 printable ASCII characters"}
	}
	c.Set(ownerKey, o)
	return nil
}

func ownerOf(c *gin.Context) string { return c.GetString(ownerKey) }

// prefixPattern keeps a forwarded prefix to a plain path, so it cannot
// inject a scheme, host or query into the URLs we hand out.
var prefixPattern = regexp.MustCompile(`^(/[A-Za-z0-9._~-]+)+$`)

// pathPrefix is where the caller sees the export routes: the BFF sends
// X-Forwarded-Prefix: /api; a direct caller gets /v1.
func pathPrefix(r *http.Request) string {
	if p := r.Header.Get("X-Forwarded-Prefix"); prefixPattern.MatchString(p) {
		return p
	}
	return "/v1"
}

// present fills in the caller-relative parts of a snapshot.
func present(j job.Job, prefix string) job.Job {
	if j.File != nil {
		f := *j.File
		f.URL = prefix + "/exports/" + j.Code + "/file"
		j.File = &f
	}
	return j
}

// idempotencyKeyPattern: printable ASCII, as in the IETF Idempotency-Key draft.
var idempotencyKeyPattern = regexp.MustCompile(`^[\x20-\x7e]{1,128}$`)

func (s *Server) create(c *gin.Context) error {
	req, err := decodeRequest(c.Writer, c.Request)
	if err != nil {
		return err
	}
	if req.Scripted() && !s.Scenarios {
		return errScenariosDisabled
	}
	key, hasKey := c.Request.Header["Idempotency-Key"]
	if hasKey && (len(key) != 1 || !idempotencyKeyPattern.MatchString(key[0])) {
		return &apiError{http.StatusBadRequest, "INVALID_IDEMPOTENCY_KEY", "Idempotency-Key must be one value of 1 to 128 printable ASCII characters"}
	}
	owner := ownerOf(c)
	if err := s.roomFor(c, owner); err != nil {
		return err
	}
	j := job.New(req, owner, time.Now().UTC())
	stored, created, err := s.Store.Create(c, j, c.GetHeader("Idempotency-Key"))
	if err != nil {
		return fmt.Errorf("create export: %w", err)
	}
	prefix := pathPrefix(c.Request)
	c.Header("Location", prefix+"/exports/"+stored.Code)
	if !created {
		c.JSON(http.StatusOK, present(stored, prefix)) // a replay of the same request
		return nil
	}
	if err := s.Pool.Submit(j.Code); err != nil {
		// The job never started: record why, so it is not PENDING forever.
		_, _ = s.Store.Update(c, j.Code, func(j *job.Job) error {
			j.Status, j.Error = job.StatusFailed, &job.Failure{Code: "NOT_STARTED", Message: err.Error()}
			return nil
		})
		c.Writer.Header().Del("Location")
		return err
	}
	// Debug, not info: at thousands of creates a second a line each would
	// be a write(2) per request (the request log has them at debug too).
	s.log.Debug("export created", "code", j.Code, "rows", req.Rows, "durationMs", req.DurationMs)
	c.JSON(http.StatusAccepted, present(j, prefix))
	return nil
}

// roomFor refuses a new job of owner past its cap of unfinished jobs or
// when the files directory has no room for it. A cap that cannot be
// checked refuses too (503).
func (s *Server) roomFor(ctx context.Context, owner string) error {
	if s.MaxActivePerOwner > 0 {
		_, active, err := s.Store.Stats(ctx)
		if err != nil {
			return fmt.Errorf("create export: %w", err)
		}
		if active[owner] >= s.MaxActivePerOwner {
			return job.ErrTooManyActive
		}
	}
	if err := s.Pool.RoomForNew(); err != nil {
		return fmt.Errorf("create export: %w", err)
	}
	return nil
}

// decodeRequest reads one JSON object of bounded size with no unknown fields.
func decodeRequest(w http.ResponseWriter, r *http.Request) (job.Request, error) {
	var req job.Request
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
			return req, &apiError{http.StatusUnsupportedMediaType, "UNSUPPORTED_MEDIA_TYPE", "Content-Type must be application/json"}
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		return req, fmt.Errorf("read body: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		var syntax *json.SyntaxError
		var typ *json.UnmarshalTypeError
		if errors.As(err, &syntax) || errors.As(err, &typ) {
			return req, err
		}
		return req, &apiError{http.StatusBadRequest, "INVALID_JSON", "request body must be one JSON object: " + err.Error()}
	}
	if dec.More() {
		return req, &apiError{http.StatusBadRequest, "INVALID_JSON", "request body must be one JSON object"}
	}
	return req, req.Validate()
}

func (s *Server) list(c *gin.Context) error {
	owner := ownerOf(c)
	if q, ok := c.GetQuery("owner"); ok && q != owner {
		// Only the caller's own jobs are ever listed.
		c.JSON(http.StatusOK, gin.H{"exports": []job.Job{}})
		return nil
	}
	jobs, err := s.Store.List(c, owner)
	if err != nil {
		return fmt.Errorf("list: %w", err)
	}
	prefix := pathPrefix(c.Request)
	out := make([]job.Job, len(jobs))
	for i, j := range jobs {
		out[i] = present(j, prefix)
	}
	c.JSON(http.StatusOK, gin.H{"exports": out})
	return nil
}

// lookup parses :code and loads the caller's job.
func (s *Server) lookup(c *gin.Context) (job.Job, error) {
	code, err := job.ParseCode(c.Param("code"))
	if err != nil {
		return job.Job{}, err
	}
	j, err := s.Store.Get(c, code)
	if err != nil {
		return job.Job{}, err
	}
	if j.Owner != ownerOf(c) {
		return job.Job{}, job.ErrNotFound
	}
	return j, nil
}

func (s *Server) get(c *gin.Context) error {
	j, err := s.lookup(c)
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, present(j, pathPrefix(c.Request)))
	return nil
}

// delete cancels an unfinished job (200 with its CANCELLED snapshot) or
// deletes a finished one with its file (204).
func (s *Server) delete(c *gin.Context) error {
	j, err := s.lookup(c)
	if err != nil {
		return err
	}
	cancelled, err := s.Store.Update(c, j.Code, func(j *job.Job) error {
		if j.Status.Terminal() {
			return job.ErrTerminal
		}
		j.Status = job.StatusCancelled
		return nil
	})
	switch {
	case err == nil:
		s.Pool.Cancel(j.Code)
		s.log.Info("export cancelled", "code", j.Code)
		c.JSON(http.StatusOK, present(cancelled, pathPrefix(c.Request)))
		return nil
	case errors.Is(err, job.ErrTerminal):
		if err := s.Store.Delete(c, j.Code); err != nil {
			return fmt.Errorf("delete: %w", err)
		}
		if err := s.Pool.RemoveFile(j.Code); err != nil {
			s.log.Error("delete file", "code", j.Code, "err", err)
		}
		s.log.Info("export deleted", "code", j.Code)
		c.Status(http.StatusNoContent)
		return nil
	default:
		return fmt.Errorf("cancel: %w", err)
	}
}

func (s *Server) file(c *gin.Context) error {
	j, err := s.lookup(c)
	if errors.Is(err, job.ErrNotFound) {
		// Swept by retention: the file is gone for good, say so.
		if owner, gone, _ := s.Store.Expired(c, c.Param("code")); gone && owner == ownerOf(c) {
			err = job.ErrGone
		}
	}
	if err != nil {
		return err
	}
	if j.Status != job.StatusCompleted || j.File == nil {
		return fmt.Errorf("export is %s: %w", j.Status, job.ErrNotReady)
	}
	if time.Now().After(j.File.ExpiresAt) {
		return job.ErrGone // expired, not swept yet
	}
	f, err := os.Open(s.Pool.FilePath(j.Code))
	if err != nil {
		return fmt.Errorf("open file: %w", err)
	}
	defer func() { _ = f.Close() }()
	h := c.Writer.Header()
	h.Set("Content-Type", j.File.ContentType)
	h.Set("Content-Disposition", contentDisposition(j.File.Name))
	h.Set("ETag", `"`+j.File.SHA256+`"`)
	h.Set("Cache-Control", "private, no-cache")
	// ServeContent sets Content-Length and answers Range and If-None-Match.
	http.ServeContent(c.Writer, c.Request, j.File.Name, j.UpdatedAt, f)
	return nil
}
