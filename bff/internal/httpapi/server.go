// Package httpapi is the BFF's HTTP surface: the browser-facing /api routes
// (proxied to the backend, event streams relayed through relay.Hub), the
// demo page and health and metrics endpoints.
package httpapi

import (
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/exportstream/exportstream/bff/internal/backend"
	"github.com/exportstream/exportstream/bff/internal/relay"
)

// maxBodyBytes bounds what the BFF forwards for a create request.
const maxBodyBytes = 64 << 10

// Config is what the HTTP layer needs.
type Config struct {
	Backend *backend.Client
	Hub     *relay.Hub
	Metrics *Metrics
	Logger  *slog.Logger
	// StaticDir holds the built demo page; empty or missing serves a hint.
	StaticDir string
	Heartbeat time.Duration
	Retry     time.Duration
}

// Server serves the BFF.
type Server struct {
	Config
	router    *gin.Engine
	closeOnce sync.Once
	closing   chan struct{}
}

// New returns the BFF's HTTP handler.
func New(cfg Config) *Server {
	gin.SetMode(gin.ReleaseMode)
	s := &Server{Config: cfg, closing: make(chan struct{})}
	r := gin.New()
	r.Use(gin.Recovery())
	r.GET("/healthz", func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"status": "ok"}) })
	r.GET("/readyz", func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"status": "ready"}) })
	r.GET("/metrics", gin.WrapH(promhttp.HandlerFor(cfg.Metrics.Registry, promhttp.HandlerOpts{})))

	api := r.Group("/api/exports")
	api.POST("", s.create)
	api.GET("", s.list)
	api.GET("/:code", s.withCode(s.get))
	api.DELETE("/:code", s.withCode(s.cancel))
	api.GET("/:code/events", s.withCode(s.events))
	api.GET("/:code/file", s.withCode(s.file))
	r.NoRoute(s.static())
	s.router = r
	return s
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.router.ServeHTTP(w, r) }

// CloseStreams ends every open browser stream cleanly; browsers reconnect
// (to this or another instance) and resume by Last-Event-ID. Register it
// with http.Server.RegisterOnShutdown.
func (s *Server) CloseStreams() { s.closeOnce.Do(func() { close(s.closing) }) }

// withCode checks the :code parameter before the handler runs, so a bad
// code never reaches the backend.
func (s *Server) withCode(h func(c *gin.Context, code string)) gin.HandlerFunc {
	return func(c *gin.Context) {
		u, err := uuid.Parse(c.Param("code"))
		if err != nil || len(c.Param("code")) != 36 {
			writeError(c, errInvalidCode)
			return
		}
		h(c, u.String())
	}
}

func (s *Server) create(c *gin.Context) {
	body := http.MaxBytesReader(c.Writer, c.Request.Body, maxBodyBytes)
	s.forward(c, http.MethodPost, "/v1/exports", body, "Content-Type", "Idempotency-Key")
}

func (s *Server) list(c *gin.Context) {
	s.forward(c, http.MethodGet, "/v1/exports", nil)
}

// cancel cancels a running export or deletes a finished one.
func (s *Server) cancel(c *gin.Context, code string) {
	s.forward(c, http.MethodDelete, "/v1/exports/"+code, nil)
}

func (s *Server) get(c *gin.Context, code string) {
	s.forward(c, http.MethodGet, "/v1/exports/"+code, nil)
}

// file streams the download from the backend; Range and conditional
// requests pass through, so resumable downloads work end to end.
func (s *Server) file(c *gin.Context, code string) {
	s.forward(c, http.MethodGet, "/v1/exports/"+code+"/file", nil, "Range", "If-Range", "If-None-Match", "If-Modified-Since")
}

// responseHeaders are the backend response headers a browser needs.
var responseHeaders = []string{
	"Content-Type", "Content-Length", "Content-Disposition", "Content-Range", "Accept-Ranges",
	"ETag", "Last-Modified", "Cache-Control", "Location", "Retry-After",
}

// forward sends the request to the backend with the named request headers
// and copies status, response headers and body back as they come.
func (s *Server) forward(c *gin.Context, method, path string, body io.Reader, requestHeaders ...string) {
	h := http.Header{}
	for _, k := range requestHeaders {
		if v := c.Request.Header.Values(k); len(v) > 0 {
			h[http.CanonicalHeaderKey(k)] = v
		}
	}
	resp, err := s.Backend.Do(c.Request.Context(), method, path, body, h)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(c, &apiError{http.StatusRequestEntityTooLarge, "BODY_TOO_LARGE", "request body must be at most 65536 bytes"})
			return
		}
		if c.Request.Context().Err() == nil {
			s.Logger.Warn("backend unreachable", "method", method, "path", path, "err", err)
		}
		writeError(c, errBackend)
		return
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode == http.StatusUnauthorized {
		// The browser cannot fix our service token: it is our outage.
		s.Logger.Error("the backend rejected the service token; check SERVICE_TOKEN on both", "path", path)
		writeError(c, errBackend)
		return
	}
	for _, k := range responseHeaders {
		if v := resp.Header.Values(k); len(v) > 0 {
			c.Writer.Header()[k] = v
		}
	}
	c.Status(resp.StatusCode)
	if _, err := io.Copy(c.Writer, resp.Body); err != nil && c.Request.Context().Err() == nil {
		s.Logger.Warn("copy backend response", "path", path, "err", err)
	}
}

// static serves the built demo page for any GET outside /api.
func (s *Server) static() gin.HandlerFunc {
	files := http.FileServer(http.Dir(s.StaticDir))
	return func(c *gin.Context) {
		if c.Request.Method != http.MethodGet && c.Request.Method != http.MethodHead {
			writeError(c, &apiError{http.StatusMethodNotAllowed, "METHOD_NOT_ALLOWED", "method " + c.Request.Method + " is not allowed here"})
			return
		}
		if _, err := os.Stat(filepath.Join(s.StaticDir, "index.html")); s.StaticDir == "" || err != nil {
			if c.Request.URL.Path == "/" {
				c.Data(http.StatusOK, "text/html; charset=utf-8", []byte(notBuiltPage))
				return
			}
			writeError(c, &apiError{http.StatusNotFound, "NO_ROUTE", "no such endpoint: " + c.Request.URL.Path})
			return
		}
		files.ServeHTTP(c.Writer, c.Request)
	}
}

const notBuiltPage = `<!doctype html><title>exportstream</title>
<p>The demo page is not built. Run <code>make build</code> (or <code>make demo</code>) and reload.</p>`
