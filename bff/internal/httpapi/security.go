package httpapi

import (
	"errors"
	"net/http"
	"net/url"
	"slices"

	"github.com/gin-gonic/gin"

	"github.com/exportstream/exportstream/bff/internal/session"
)

// Keys of what loadSession learnt, in the request's gin context.
const (
	sessionKey = "session"
	expiredKey = "sessionExpired"
)

// loadSession reads the browser's signed session cookie. A valid one is
// the request's session, re-issued (same id, new issue time, the signing
// key) once it is stale: an active browser keeps its session. An expired
// one is remembered, so that every route that uses the session answers
// errSessionExpired. A cookie no key verifies is no session at all.
func (s *Server) loadSession(c *gin.Context) {
	sess, ok, err := s.Sessions.Read(c.Request)
	switch {
	case errors.Is(err, session.ErrExpired):
		c.Set(expiredKey, true)
	case ok:
		c.Set(sessionKey, sess.ID)
		if sess.Stale {
			s.Sessions.Refresh(c.Writer, sess.ID)
		}
	}
}

func sessionID(c *gin.Context) (string, bool) {
	id := c.GetString(sessionKey)
	return id, id != ""
}

// startSession gives the browser a new session, whatever it had.
func (s *Server) startSession(c *gin.Context) string {
	id := s.Sessions.Issue(c.Writer)
	c.Set(sessionKey, id)
	c.Set(expiredKey, false)
	return id
}

// requireSession is the browser's session. A browser whose session
// expired gets errSessionExpired; one without a session errNotFound (404):
// it owns no export, so whatever code it asks for is not one of its own.
func requireSession(c *gin.Context) (string, error) {
	if c.GetBool(expiredKey) {
		return "", errSessionExpired
	}
	id, ok := sessionID(c)
	if !ok {
		return "", errNotFound
	}
	return id, nil
}

// newSession is POST /api/session: a new session for the browser, in
// place of its expired one (or of any it had), answered 204.
func (s *Server) newSession(c *gin.Context) error {
	if err := s.allowNewSession(c); err != nil {
		return err
	}
	s.startSession(c)
	c.Status(http.StatusNoContent)
	c.Writer.WriteHeaderNow()
	return nil
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
