package httpapi

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"

	"github.com/gin-gonic/gin"
)

// apiError is the body of every error the BFF itself answers with:
// {"error":{"code","message"}}. A handler returns one for an answer that
// only it gives (an unknown route); the BFF's other errors go through
// errorTable. Backend errors are passed through as sent.
type apiError struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *apiError) Error() string { return e.Code + ": " + e.Message }

// The BFF's errors; each is answered by its row of errorTable.
var (
	errInvalidCode  = errors.New("export code must be a UUID")
	errNotFound     = errors.New("export not found")
	errOrigin       = errors.New("this origin may not change exports")
	errBodyTooLarge = fmt.Errorf("request body must be at most %d bytes", maxBodyBytes)
	errRateLimited  = errors.New("too many exports started; slow down")
	// errSessionExpired is a cookie the BFF signed whose lifetime is over.
	errSessionExpired = errors.New("your session has expired; start a new one with POST /api/session (the exports of the old one are no longer reachable)")
	// errBackend wraps what went wrong between the BFF and the backend
	// (unreachable, our service token refused, the backend's own fault):
	// nothing the browser can fix.
	errBackend      = errors.New("the export service cannot be reached; try again later")
	errShuttingDown = errors.New("shutting down")
	// errTooManyStreams, errAddressStreams, errServerBusy, errServerFull,
	// errAddressRateLimited, errTooManySessions: limits.go.
)

// errorRow answers the errors wrapping target with status, code and
// target's own text: what wraps it (a backend address, a status) is for
// the log, never for the browser.
type errorRow struct {
	target     error
	status     int
	code       string
	retryAfter string // seconds, or "" for no Retry-After; a retryLater wrapped in the error says better
	// closeConn closes the connection after the answer: the server sheds
	// load, and an idle connection kept by a browser would hold a file.
	closeConn bool
}

// errorTable maps every error a handler may return to its answer; the
// first row that matches wins. An error no row matches is a 500 INTERNAL
// whose text stays in the log.
var errorTable = []errorRow{
	{target: errInvalidCode, status: http.StatusBadRequest, code: "INVALID_CODE"},
	{target: errScenariosDisabled, status: http.StatusBadRequest, code: "SCENARIOS_DISABLED"},
	{target: errInvalidFault, status: http.StatusBadRequest, code: "INVALID_FAULT"},
	{target: errNotFound, status: http.StatusNotFound, code: "NOT_FOUND"},
	{target: errSessionExpired, status: http.StatusUnauthorized, code: "SESSION_EXPIRED"},
	{target: errOrigin, status: http.StatusForbidden, code: "FORBIDDEN_ORIGIN"},
	{target: errBodyTooLarge, status: http.StatusRequestEntityTooLarge, code: "BODY_TOO_LARGE"},
	{target: errRateLimited, status: http.StatusTooManyRequests, code: "RATE_LIMITED", retryAfter: "1"},
	{target: errAddressRateLimited, status: http.StatusTooManyRequests, code: "TOO_MANY_REQUESTS", retryAfter: "1"},
	{target: errTooManySessions, status: http.StatusTooManyRequests, code: "TOO_MANY_SESSIONS", retryAfter: "1"},
	{target: errTooManyStreams, status: http.StatusTooManyRequests, code: "TOO_MANY_STREAMS"},
	// Streams free up as others close, at no rate a bucket could tell.
	{target: errAddressStreams, status: http.StatusTooManyRequests, code: "TOO_MANY_STREAMS", retryAfter: "5"},
	{target: errServerBusy, status: http.StatusServiceUnavailable, code: "TOO_MANY_STREAMS", retryAfter: "5", closeConn: true},
	{target: errServerFull, status: http.StatusServiceUnavailable, code: "TOO_MANY_CONNECTIONS", retryAfter: "5", closeConn: true},
	{target: errShuttingDown, status: http.StatusServiceUnavailable, code: "UNAVAILABLE", retryAfter: "5"},
	{target: errBackend, status: http.StatusBadGateway, code: "BACKEND_UNAVAILABLE", retryAfter: "5"},
}

// internalError answers every error no row matches.
var internalError = errorRow{status: http.StatusInternalServerError, code: "INTERNAL"}

// answerTo is the row that answers err and its message.
func answerTo(err error) (errorRow, string) {
	if e, ok := errors.AsType[*apiError](err); ok {
		return errorRow{status: e.Status, code: e.Code}, e.Message
	}
	for _, row := range errorTable {
		if errors.Is(err, row.target) {
			return row, row.target.Error()
		}
	}
	return internalError, "internal error"
}

// handle adapts a handler that returns an error to gin: every error the
// BFF answers comes out of writeError.
//
// Once a response has started (a relayed answer, a hijacked event stream)
// its status is on the wire, so an error can no longer become one: it ends
// the response and is logged at debug (a browser that went away is
// routine), or at info when boundWrites cut off one that stopped reading.
func (s *Server) handle(h func(c *gin.Context) error) gin.HandlerFunc {
	return func(c *gin.Context) {
		err := h(c)
		switch {
		case err == nil:
		case !c.Writer.Written():
			s.writeError(c, err)
		case errors.Is(err, os.ErrDeadlineExceeded):
			s.Logger.Info("cut off a browser that stopped reading a response", "path", c.Request.URL.Path, "remote", c.Request.RemoteAddr)
		default:
			s.Logger.Debug("response ended early", "path", c.Request.URL.Path, "err", err)
		}
	}
}

// writeError answers err with its status, headers and JSON body, and
// aborts the handler chain (a middleware's error stops the request). Our
// own faults are logged: a 500 always, a 502 unless the browser left.
func (s *Server) writeError(c *gin.Context, err error) {
	row, message := answerTo(err)
	switch {
	case row.status == http.StatusInternalServerError:
		s.Logger.Error("request failed", "method", c.Request.Method, "path", c.Request.URL.Path, "err", err)
	case row.status == http.StatusBadGateway && c.Request.Context().Err() == nil:
		s.Logger.Warn("backend unavailable", "method", c.Request.Method, "path", c.Request.URL.Path, "err", err)
	}
	if later, ok := errors.AsType[*retryLater](err); ok {
		c.Header("Retry-After", strconv.FormatInt(retryAfterSeconds(later.after), 10))
	} else if row.retryAfter != "" {
		c.Header("Retry-After", row.retryAfter)
	}
	if row.closeConn {
		c.Header("Connection", "close")
	}
	c.AbortWithStatusJSON(row.status, gin.H{"error": apiError{Code: row.code, Message: message}})
}
