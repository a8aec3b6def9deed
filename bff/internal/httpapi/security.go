package httpapi

import (
	"net/http"
	"net/url"
	"slices"

	"github.com/gin-gonic/gin"
)

const sessionKey = "session"

// loadSession reads the browser's signed session cookie, if valid.
func (s *Server) loadSession(c *gin.Context) {
	if id, ok := s.Sessions.Read(c.Request); ok {
		c.Set(sessionKey, id)
	}
}

func sessionID(c *gin.Context) (string, bool) {
	id := c.GetString(sessionKey)
	return id, id != ""
}

// ensureSession returns the browser's session, starting one if it has none.
func (s *Server) ensureSession(c *gin.Context) string {
	if id, ok := sessionID(c); ok {
		return id
	}
	id := s.Sessions.Issue(c.Writer)
	c.Set(sessionKey, id)
	return id
}

// requireSession is errNotFound (404) for a browser without a session: it
// owns no export, so whatever code it asks for is not one of its own.
func requireSession(c *gin.Context) (string, error) {
	id, ok := sessionID(c)
	if !ok {
		return "", errNotFound
	}
	return id, nil
}

// checkOrigin refuses state-changing requests from other sites (CSRF):
// the Origin (or, lacking it, the Referer) must be this BFF's own origin
// or an allowed one. Requests with neither come from non-browser clients.
func (s *Server) checkOrigin(c *gin.Context) error {
	origin := c.GetHeader("Origin")
	if origin == "" {
		if ref, err := url.Parse(c.GetHeader("Referer")); err == nil && ref.Host != "" {
			origin = ref.Scheme + "://" + ref.Host
		}
	}
	if origin == "" || origin == ownOrigin(c.Request) || slices.Contains(s.AllowedOrigins, origin) {
		return nil
	}
	return errOrigin
}

// ownOrigin is the origin the browser used to reach us; behind a proxy it
// needs the Host header passed through (nginx: proxy_set_header Host $http_host).
func ownOrigin(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil || r.Header.Get("X-Forwarded-Proto") == "https" {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// cors lets the allowed origins (a frontend dev server on another port)
// call the API with credentials, and answers their preflights.
func (s *Server) cors(c *gin.Context) {
	origin := c.GetHeader("Origin")
	if origin == "" || !slices.Contains(s.AllowedOrigins, origin) {
		return
	}
	h := c.Writer.Header()
	h.Set("Access-Control-Allow-Origin", origin)
	h.Set("Access-Control-Allow-Credentials", "true")
	h.Set("Access-Control-Expose-Headers", "Location, Retry-After, Content-Disposition")
	h.Add("Vary", "Origin")
	if c.Request.Method == http.MethodOptions {
		h.Set("Access-Control-Allow-Methods", "GET, POST, DELETE")
		h.Set("Access-Control-Allow-Headers", "Content-Type, Idempotency-Key, Last-Event-ID")
		h.Set("Access-Control-Max-Age", "600")
		c.AbortWithStatus(http.StatusNoContent)
	}
}

// contentSecurityPolicy lets the demo page load only its own files (no
// inline script or style) and be framed by nobody.
const contentSecurityPolicy = "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// securityHeaders are sent on every response.
func securityHeaders(c *gin.Context) {
	h := c.Writer.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Content-Security-Policy", contentSecurityPolicy)
}
