// Package httpapi is the backend's HTTP surface: gin routes for the export
// API, the SSE event stream (written with go-sse) and the file download.
package httpapi

import (
	"bytes"
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
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/exportstream/exportstream/backend/internal/job"
	"github.com/exportstream/exportstream/backend/internal/store"
	"github.com/exportstream/exportstream/backend/internal/worker"
)

// maxBodyBytes bounds a create request; a valid one is well under 1 KiB.
const maxBodyBytes = 64 << 10

// Config is what the HTTP layer needs.
type Config struct {
	Store  store.Store
	Pool   *worker.Pool
	Logger *slog.Logger
	// Heartbeat is how long a stream may stay silent before a ": ping" comment.
	Heartbeat time.Duration
	// Retry is the reconnection delay advertised to EventSource clients.
	Retry time.Duration
}

// Server serves the export API.
type Server struct {
	Config
	log     *slog.Logger
	metrics *metrics
	router  *gin.Engine

	closeOnce sync.Once
	closing   chan struct{} // closed by CloseStreams
}

// New returns the backend's HTTP handler.
func New(cfg Config) *Server {
	gin.SetMode(gin.ReleaseMode)
	s := &Server{Config: cfg, log: cfg.Logger, metrics: newMetrics(), closing: make(chan struct{})}
	r := gin.New()
	r.Use(gin.Recovery())
	r.HandleMethodNotAllowed = true
	r.NoRoute(func(c *gin.Context) {
		s.writeError(c, &apiError{http.StatusNotFound, "NO_ROUTE", "no such endpoint: " + c.Request.Method + " " + c.Request.URL.Path})
	})
	r.NoMethod(func(c *gin.Context) {
		s.writeError(c, &apiError{http.StatusMethodNotAllowed, "METHOD_NOT_ALLOWED", "method " + c.Request.Method + " is not allowed here"})
	})
	r.GET("/healthz", func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"status": "ok"}) })
	r.GET("/readyz", func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"status": "ready"}) })
	r.GET("/metrics", gin.WrapH(promhttp.HandlerFor(s.metrics.registry, promhttp.HandlerOpts{})))

	v1 := r.Group("/v1/exports")
	v1.POST("", s.create)
	v1.GET("/:code", s.get)
	v1.GET("/:code/events", s.events)
	v1.GET("/:code/file", s.file)
	s.router = r
	return s
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.router.ServeHTTP(w, r) }

// CloseStreams ends every open event stream cleanly, so http.Server.Shutdown
// does not wait on them; clients reconnect and resume by Last-Event-ID.
// Register it with http.Server.RegisterOnShutdown.
func (s *Server) CloseStreams() { s.closeOnce.Do(func() { close(s.closing) }) }

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

func (s *Server) create(c *gin.Context) {
	req, err := decodeRequest(c.Writer, c.Request)
	if err != nil {
		s.writeError(c, err)
		return
	}
	j := job.New(req, time.Now().UTC())
	if err := s.Store.Create(c, j); err != nil {
		s.writeError(c, fmt.Errorf("create export: %w", err))
		return
	}
	if err := s.Pool.Submit(j.Code); err != nil {
		// The job was never started: record why, so it is not PENDING forever.
		_, _ = s.Store.Update(c, j.Code, func(j *job.Job) error {
			j.Status, j.Error = job.StatusFailed, &job.Failure{Code: "NOT_STARTED", Message: err.Error()}
			return nil
		})
		s.writeError(c, err)
		return
	}
	prefix := pathPrefix(c.Request)
	c.Header("Location", prefix+"/exports/"+j.Code)
	c.JSON(http.StatusAccepted, present(j, prefix))
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

// lookup parses the :code parameter and loads the job.
func (s *Server) lookup(c *gin.Context) (job.Job, bool) {
	code, err := job.ParseCode(c.Param("code"))
	if err == nil {
		var j job.Job
		if j, err = s.Store.Get(c, code); err == nil {
			return j, true
		}
	}
	s.writeError(c, err)
	return job.Job{}, false
}

func (s *Server) get(c *gin.Context) {
	if j, ok := s.lookup(c); ok {
		c.JSON(http.StatusOK, present(j, pathPrefix(c.Request)))
	}
}

func (s *Server) file(c *gin.Context) {
	j, ok := s.lookup(c)
	if !ok {
		return
	}
	if j.Status != job.StatusCompleted || j.File == nil {
		s.writeError(c, fmt.Errorf("export is %s: %w", j.Status, job.ErrNotReady))
		return
	}
	f, err := os.Open(s.Pool.FilePath(j.Code))
	if err != nil {
		s.writeError(c, fmt.Errorf("open file: %w", err))
		return
	}
	defer func() { _ = f.Close() }()
	h := c.Writer.Header()
	h.Set("Content-Type", j.File.ContentType)
	h.Set("Content-Disposition", contentDisposition(j.File.Name))
	h.Set("ETag", `"`+j.File.SHA256+`"`)
	h.Set("Cache-Control", "private, no-cache")
	// ServeContent sets Content-Length and answers Range and If-None-Match.
	http.ServeContent(c.Writer, c.Request, j.File.Name, j.UpdatedAt, f)
}
