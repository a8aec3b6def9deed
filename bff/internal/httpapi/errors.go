package httpapi

import (
	"net/http"

	"github.com/gin-gonic/gin"
)

// apiError is the body of every error the BFF itself answers with:
// {"error":{"code","message"}}. Backend errors are passed through as sent.
type apiError struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

var (
	errInvalidCode  = &apiError{http.StatusBadRequest, "INVALID_CODE", "export code must be a UUID"}
	errNotFound     = &apiError{http.StatusNotFound, "NOT_FOUND", "export not found"}
	errBackend      = &apiError{http.StatusBadGateway, "BACKEND_UNAVAILABLE", "the export service cannot be reached; try again later"}
	errShuttingDown = &apiError{http.StatusServiceUnavailable, "UNAVAILABLE", "shutting down"}
	errInternal     = &apiError{http.StatusInternalServerError, "INTERNAL", "internal error"}
	errOrigin       = &apiError{http.StatusForbidden, "FORBIDDEN_ORIGIN", "this origin may not change exports"}
)

func writeError(c *gin.Context, e *apiError) {
	if e.Status == http.StatusBadGateway || e.Status == http.StatusServiceUnavailable {
		c.Header("Retry-After", "5")
	}
	if e == errServerBusy || e == errServerFull {
		c.Header("Connection", "close")
	}
	c.AbortWithStatusJSON(e.Status, gin.H{"error": e})
}
