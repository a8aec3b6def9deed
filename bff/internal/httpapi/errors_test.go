package httpapi

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/gin-gonic/gin"
)

// answer serves one request whose handler returns what h does, through handle.
func answer(t *testing.T, h func(c *gin.Context) error) *httptest.ResponseRecorder {
	t.Helper()
	s := &Server{Config: Config{Logger: slog.New(slog.DiscardHandler)}}
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.GET("/", s.handle(h))
	w := httptest.NewRecorder()
	r.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/", nil))
	return w
}

func TestEveryErrorIsAnsweredWithTheStatusAndCodeOfItsRow(t *testing.T) {
	refused := errors.New("dial tcp 10.0.0.7:8081: connection refused")
	tests := []struct {
		name       string
		err        error
		status     int
		code       string
		message    string
		retryAfter string
		connection string
	}{
		{"a handler's own answer", &apiError{http.StatusNotFound, "NO_ROUTE", "no such endpoint: /x"}, 404, "NO_ROUTE", "no such endpoint: /x", "", ""},
		{"a malformed code", fmt.Errorf("get: %w", errInvalidCode), 400, "INVALID_CODE", "export code must be a UUID", "", ""},
		{"an export of no session", fmt.Errorf("get: %w", errNotFound), 404, "NOT_FOUND", "export not found", "", ""},
		{"a foreign origin", fmt.Errorf("create: %w", errOrigin), 403, "FORBIDDEN_ORIGIN", "this origin may not change exports", "", ""},
		{"a body over the limit", fmt.Errorf("%w: %w", errBodyTooLarge, &http.MaxBytesError{Limit: maxBodyBytes}), 413, "BODY_TOO_LARGE", "request body must be at most 65536 bytes", "", ""},
		{"a session creating too fast", fmt.Errorf("create: %w", errRateLimited), 429, "RATE_LIMITED", "too many exports started; slow down", "1", ""},
		{"a session at its stream cap", fmt.Errorf("events: %w", errTooManyStreams), 429, "TOO_MANY_STREAMS", "this session has too many open event streams; use /api/events", "", ""},
		{"a server at its stream cap", fmt.Errorf("events: %w", errServerBusy), 503, "TOO_MANY_STREAMS", "this server has too many open event streams; try again later", "5", "close"},
		{"a connection past the file budget", fmt.Errorf("any: %w", errServerFull), 503, "TOO_MANY_CONNECTIONS", "this server has no room for another connection; try again later", "5", "close"},
		{"a server shutting down", fmt.Errorf("events: %w", errShuttingDown), 503, "UNAVAILABLE", "shutting down", "5", ""},
		{"an unreachable backend, its address unsaid", fmt.Errorf("%w: %w", errBackend, refused), 502, "BACKEND_UNAVAILABLE", "the export service cannot be reached; try again later", "5", ""},
		{"an unknown error, its text unsaid", fmt.Errorf("open /secret/path: %w", errors.New("permission denied")), 500, "INTERNAL", "internal error", "", ""},
	}
	answered := make(map[int]bool) // the rows of errorTable some case reaches
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := answer(t, func(*gin.Context) error { return tt.err })
			if w.Code != tt.status {
				t.Errorf("status %d, want %d", w.Code, tt.status)
			}
			want := fmt.Sprintf(`{"error":{"code":%q,"message":%q}}`, tt.code, tt.message)
			if got := w.Body.String(); got != want {
				t.Errorf("body\n %s\nwant\n %s", got, want)
			}
			if got := w.Header().Get("Retry-After"); got != tt.retryAfter {
				t.Errorf("Retry-After %q, want %q", got, tt.retryAfter)
			}
			if got := w.Header().Get("Connection"); got != tt.connection {
				t.Errorf("Connection %q, want %q", got, tt.connection)
			}
		})
		for i, row := range errorTable {
			if errors.Is(tt.err, row.target) {
				answered[i] = true
				break
			}
		}
	}
	for i, row := range errorTable {
		if !answered[i] {
			t.Errorf("no case for the row answering %d %s", row.status, row.code)
		}
	}
}

func TestAnErrorAfterTheResponseStartedEndsItUnchanged(t *testing.T) {
	w := answer(t, func(c *gin.Context) error {
		c.String(http.StatusPartialContent, "first bytes")
		return fmt.Errorf("copy the response: %w", errors.New("connection reset by peer"))
	})
	if w.Code != http.StatusPartialContent || w.Body.String() != "first bytes" {
		t.Errorf("got %d %q, want the started 206 left as it was", w.Code, w.Body.String())
	}
}
