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
type apiError struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *apiError) Error() string { return e.Code + ": " + e.Message }

// writeError is the one place that maps an error to a status and JSON body,
// so handlers just return errors.
func (s *Server) writeError(c *gin.Context, err error) {
	e := s.toAPIError(err)
	if e.Status >= 500 {
		s.log.Error("request failed", "method", c.Request.Method, "path", c.Request.URL.Path, "err", err)
	}
	if e.Status == http.StatusServiceUnavailable || e.Status == http.StatusTooManyRequests || e.Status == http.StatusInsufficientStorage {
		c.Header("Retry-After", strconv.Itoa(5))
	}
	c.AbortWithStatusJSON(e.Status, gin.H{"error": e})
}

func (s *Server) toAPIError(err error) *apiError {
	var (
		api     *apiError
		invalid *job.ValidationError
		tooBig  *http.MaxBytesError
		syntax  *json.SyntaxError
		typ     *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &api):
		return api
	case errors.As(err, &invalid):
		return &apiError{http.StatusUnprocessableEntity, "VALIDATION_FAILED", invalid.Error()}
	case errors.As(err, &typ):
		return &apiError{http.StatusUnprocessableEntity, "VALIDATION_FAILED", typ.Field + ": must be a " + typ.Type.String()}
	case errors.As(err, &tooBig):
		return &apiError{http.StatusRequestEntityTooLarge, "BODY_TOO_LARGE", "request body must be at most " + strconv.FormatInt(tooBig.Limit, 10) + " bytes"}
	case errors.As(err, &syntax):
		return &apiError{http.StatusBadRequest, "INVALID_JSON", "request body is not valid JSON: " + syntax.Error()}
	case errors.Is(err, job.ErrInvalidCode):
		return &apiError{http.StatusBadRequest, "INVALID_CODE", err.Error()}
	case errors.Is(err, job.ErrNotFound):
		return &apiError{http.StatusNotFound, "NOT_FOUND", err.Error()}
	case errors.Is(err, job.ErrNotReady):
		return &apiError{http.StatusConflict, "NOT_READY", err.Error()}
	case errors.Is(err, job.ErrGone):
		return &apiError{http.StatusGone, "GONE", err.Error()}
	case errors.Is(err, job.ErrKeyReused):
		return &apiError{http.StatusConflict, "IDEMPOTENCY_KEY_REUSED", err.Error()}
	case errors.Is(err, job.ErrKeyOfDeletedExport):
		return &apiError{http.StatusConflict, "EXPORT_DELETED", err.Error()}
	case errors.Is(err, job.ErrTooManyActive):
		return &apiError{http.StatusTooManyRequests, "TOO_MANY_ACTIVE", err.Error()}
	case errors.Is(err, job.ErrQueueFull):
		return &apiError{http.StatusServiceUnavailable, "QUEUE_FULL", err.Error()}
	case errors.Is(err, job.ErrStoreUnavailable):
		return &apiError{http.StatusServiceUnavailable, "STORE_UNAVAILABLE", job.ErrStoreUnavailable.Error()}
	case errors.Is(err, job.ErrStorageFull):
		return &apiError{http.StatusInsufficientStorage, "INSUFFICIENT_STORAGE", job.ErrStorageFull.Error()}
	case errors.Is(err, job.ErrStorageReadOnly):
		return &apiError{http.StatusServiceUnavailable, "STORAGE_READ_ONLY", job.ErrStorageReadOnly.Error()}
	case errors.Is(err, eventmux.ErrStreamNotFound):
		return &apiError{http.StatusNotFound, "STREAM_NOT_FOUND", eventmux.ErrStreamNotFound.Error()}
	case errors.Is(err, eventmux.ErrTooManySubscriptions):
		return &apiError{http.StatusTooManyRequests, "TOO_MANY_SUBSCRIPTIONS", eventmux.ErrTooManySubscriptions.Error()}
	case errors.Is(err, eventmux.ErrNoAnswer):
		return &apiError{http.StatusServiceUnavailable, "STREAM_UNAVAILABLE", eventmux.ErrNoAnswer.Error()}
	case errors.Is(err, job.ErrUnavailable):
		return &apiError{http.StatusServiceUnavailable, "UNAVAILABLE", err.Error()}
	}
	return &apiError{http.StatusInternalServerError, "INTERNAL", "internal error"}
}
