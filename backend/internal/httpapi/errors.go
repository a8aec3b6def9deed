package httpapi

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"

	"github.com/exportstream/exportstream/backend/internal/eventmux"
	"github.com/exportstream/exportstream/backend/internal/job"
)

// apiError is the body of every error response: {"error":{"code","message"}}.
// A handler returns one for an answer that only it gives (a malformed
// header, an unknown route); errors of the domain go through errorTable.
type apiError struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *apiError) Error() string { return e.Code + ": " + e.Message }

// errorRow answers the errors match accepts with status, code and the
// message match returns.
type errorRow struct {
	match  func(error) (message string, ok bool)
	status int
	code   string
}

// errorTable maps every error a handler may return to its answer; the
// first row that matches wins. An error no row matches is a 500 INTERNAL
// whose text stays in the log.
var errorTable = []errorRow{
	{as(func(e *job.ValidationError) string { return e.Error() }), http.StatusUnprocessableEntity, "VALIDATION_FAILED"},
	{as(func(e *json.UnmarshalTypeError) string { return e.Field + ": must be a " + e.Type.String() }), http.StatusUnprocessableEntity, "VALIDATION_FAILED"},
	{as(func(e *http.MaxBytesError) string {
		return "request body must be at most " + strconv.FormatInt(e.Limit, 10) + " bytes"
	}), http.StatusRequestEntityTooLarge, "BODY_TOO_LARGE"},
	{as(func(e *json.SyntaxError) string { return "request body is not valid JSON: " + e.Error() }), http.StatusBadRequest, "INVALID_JSON"},
	{is(job.ErrInvalidCode), http.StatusBadRequest, "INVALID_CODE"},
	{is(job.ErrNotFound), http.StatusNotFound, "NOT_FOUND"},
	{is(job.ErrNotReady), http.StatusConflict, "NOT_READY"},
	{is(job.ErrGone), http.StatusGone, "GONE"},
	{is(job.ErrKeyReused), http.StatusConflict, "IDEMPOTENCY_KEY_REUSED"},
	{is(job.ErrKeyOfDeletedExport), http.StatusConflict, "EXPORT_DELETED"},
	{is(job.ErrTooManyActive), http.StatusTooManyRequests, "TOO_MANY_ACTIVE"},
	{is(job.ErrQueueFull), http.StatusServiceUnavailable, "QUEUE_FULL"},
	{isOpaque(job.ErrStoreUnavailable), http.StatusServiceUnavailable, "STORE_UNAVAILABLE"},
	{isOpaque(job.ErrStorageFull), http.StatusInsufficientStorage, "INSUFFICIENT_STORAGE"},
	{isOpaque(job.ErrStorageReadOnly), http.StatusServiceUnavailable, "STORAGE_READ_ONLY"},
	{isOpaque(eventmux.ErrStreamNotFound), http.StatusNotFound, "STREAM_NOT_FOUND"},
	{isOpaque(eventmux.ErrTooManySubscriptions), http.StatusTooManyRequests, "TOO_MANY_SUBSCRIPTIONS"},
	{isOpaque(eventmux.ErrNoAnswer), http.StatusServiceUnavailable, "STREAM_UNAVAILABLE"},
	{is(job.ErrUnavailable), http.StatusServiceUnavailable, "UNAVAILABLE"},
}

// is matches errors wrapping target; the message is the whole error, whose
// wrapping says what was being done.
func is(target error) func(error) (string, bool) {
	return func(err error) (string, bool) { return err.Error(), errors.Is(err, target) }
}

// isOpaque matches errors wrapping target; the message is target's alone,
// because what wraps it names internals (a Redis address, a disk path).
func isOpaque(target error) func(error) (string, bool) {
	return func(err error) (string, bool) { return target.Error(), errors.Is(err, target) }
}

// as matches errors with an E in their chain; message words the answer.
func as[E error](message func(E) string) func(error) (string, bool) {
	return func(err error) (string, bool) {
		e, ok := errors.AsType[E](err)
		if !ok {
			return "", false
		}
		return message(e), true
	}
}

// toAPIError is the answer to err: an *apiError is one already, anything
// else is looked up in errorTable.
func toAPIError(err error) *apiError {
	if e, ok := errors.AsType[*apiError](err); ok {
		return e
	}
	for _, row := range errorTable {
		if msg, ok := row.match(err); ok {
			return &apiError{row.status, row.code, msg}
		}
	}
	return &apiError{http.StatusInternalServerError, "INTERNAL", "internal error"}
}

// handle adapts a handler that returns an error to gin: every error answer
// of the API comes out of writeError.
//
// Once a response has started (an event stream sent its first event, a
// file its first bytes) its status is on the wire, so an error can no
// longer become one: it ends the response and is logged, unless it is the
// client leaving or the server draining.
func (s *Server) handle(h func(c *gin.Context) error) gin.HandlerFunc {
	return func(c *gin.Context) {
		err := h(c)
		switch {
		case err == nil:
		case c.Writer.Written():
			s.endResponse(c, err)
		default:
			s.writeError(c, err)
		}
	}
}

// writeError answers err with its status and JSON body, and aborts the
// handler chain (a middleware's error stops the request).
func (s *Server) writeError(c *gin.Context, err error) {
	e := toAPIError(err)
	if e.Status >= 500 {
		s.log.Error("request failed", "method", c.Request.Method, "path", c.Request.URL.Path, "err", err)
	}
	if e.Status == http.StatusServiceUnavailable || e.Status == http.StatusTooManyRequests || e.Status == http.StatusInsufficientStorage {
		c.Header("Retry-After", strconv.Itoa(5))
	}
	c.AbortWithStatusJSON(e.Status, gin.H{"error": e})
}

// endResponse logs the error that ended a started response.
func (s *Server) endResponse(c *gin.Context, err error) {
	if errors.Is(err, errSend) || errors.Is(err, errDraining) || c.Request.Context().Err() != nil {
		return
	}
	s.log.Warn("response ended early", "method", c.Request.Method, "path", c.Request.URL.Path, "code", c.Param("code"), "err", err)
}

// errScenariosDisabled answers a scripted create on a backend that does
// not allow scripts (production).
var errScenariosDisabled = &apiError{http.StatusBadRequest, "SCENARIOS_DISABLED",
	"failAt, errorCode, startDelayMs, stallAt, stallMs, expireAfterMs and rowsPerSecond script an export for demos and tests; this backend runs with SCENARIOS=off"}
