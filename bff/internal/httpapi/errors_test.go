package httpapi

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
)

// reply is what a browser is told.
type reply struct {
	status                int
	body                  string
	retryAfter, connClose string
}

// replyTo is the reply to a request whose handler returns h's error, through handle.
func replyTo(h func(c *gin.Context) error) reply {
	s := &Server{Config: Config{Logger: slog.New(slog.DiscardHandler)}}
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.GET("/", s.handle(h))
	w := httptest.NewRecorder()
	r.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/", nil))
	return reply{w.Code, w.Body.String(), w.Header().Get("Retry-After"), w.Header().Get("Connection")}
}

// errorBody is the JSON body of an error reply.
func errorBody(code, message string) string {
	return fmt.Sprintf(`{"error":{"code":%q,"message":%q}}`, code, message)
}

func TestEveryErrorIsAnsweredWithTheStatusAndCodeOfItsRow(t *testing.T) {
	refused := errors.New("dial tcp 10.0.0.7:8081: connection refused")
	tests := []struct {
		name string
		err  error
		want reply
	}{
		{"a handler's own answer", &apiError{http.StatusNotFound, "NO_ROUTE", "no such endpoint: /x"}, reply{404, errorBody("NO_ROUTE", "no such endpoint: /x"), "", ""}},
		{"a malformed code", fmt.Errorf("get: %w", errInvalidCode), reply{400, errorBody("INVALID_CODE", "export code must be a UUID"), "", ""}},
		{"a fault on a BFF without scenarios", fmt.Errorf("events: %w", errScenariosDisabled), reply{400, errorBody("SCENARIOS_DISABLED", "fault scripts a relay failure for demos and tests; this BFF runs with SCENARIOS=off"), "", ""}},
		{"a malformed fault", fmt.Errorf("events: %w", errInvalidFault), reply{400, errorBody("INVALID_FAULT", "fault must be relay-gives-up, with faultAfterMs 0-3600000 and giveUpMs 0 up to the BFF's UPSTREAM_GIVEUP"), "", ""}},
		{"an export of no session", fmt.Errorf("get: %w", errNotFound), reply{404, errorBody("NOT_FOUND", "export not found"), "", ""}},
		{"an expired session", fmt.Errorf("get: %w", errSessionExpired), reply{401, errorBody("SESSION_EXPIRED", "your session has expired; start a new one with POST /api/session (the exports of the old one are no longer reachable)"), "", ""}},
		{"a foreign origin", fmt.Errorf("create: %w", errOrigin), reply{403, errorBody("FORBIDDEN_ORIGIN", "this origin may not change exports"), "", ""}},
		{"a body over the limit", fmt.Errorf("%w: %w", errBodyTooLarge, &http.MaxBytesError{Limit: maxBodyBytes}), reply{413, errorBody("BODY_TOO_LARGE", "request body must be at most 65536 bytes"), "", ""}},
		{"a session creating too fast", fmt.Errorf("create: %w", errRateLimited), reply{429, errorBody("RATE_LIMITED", "too many exports started; slow down"), "1", ""}},
		{"an address creating too fast", fmt.Errorf("create: %w", &retryLater{errAddressRateLimited, 2500 * time.Millisecond}), reply{429, errorBody("TOO_MANY_REQUESTS", "too many exports started from this address; slow down"), "3", ""}},
		{"an address starting sessions too fast", fmt.Errorf("list: %w", &retryLater{errTooManySessions, time.Millisecond}), reply{429, errorBody("TOO_MANY_SESSIONS", "too many new sessions from this address; keep the session cookie, or slow down"), "1", ""}},
		{"an address at its stream cap", fmt.Errorf("events: %w", errAddressStreams), reply{429, errorBody("TOO_MANY_STREAMS", "too many open event streams from this address; close some or try again later"), "5", ""}},
		{"a session at its stream cap", fmt.Errorf("events: %w", errTooManyStreams), reply{429, errorBody("TOO_MANY_STREAMS", "this session has too many open event streams; use /api/events"), "", ""}},
		{"a server at its stream cap", fmt.Errorf("events: %w", errServerBusy), reply{503, errorBody("TOO_MANY_STREAMS", "this server has too many open event streams; try again later"), "5", "close"}},
		{"a connection past the file budget", fmt.Errorf("any: %w", errServerFull), reply{503, errorBody("TOO_MANY_CONNECTIONS", "this server has no room for another connection; try again later"), "5", "close"}},
		{"a server shutting down", fmt.Errorf("events: %w", errShuttingDown), reply{503, errorBody("UNAVAILABLE", "shutting down"), "5", ""}},
		{"an unreachable backend, its address unsaid", fmt.Errorf("%w: %w", errBackend, refused), reply{502, errorBody("BACKEND_UNAVAILABLE", "the export service cannot be reached; try again later"), "5", ""}},
		{"an unknown error, its text unsaid", fmt.Errorf("open /secret/path: %w", errors.New("permission denied")), reply{500, errorBody("INTERNAL", "internal error"), "", ""}},
	}
	tested := make(map[error]bool) // the targets of errorTable some case wraps
	for _, tt := range tests {
		if got := replyTo(func(*gin.Context) error { return tt.err }); got != tt.want {
			t.Errorf("%s:\n got %+v\nwant %+v", tt.name, got, tt.want)
		}
		for _, row := range errorTable {
			tested[row.target] = tested[row.target] || errors.Is(tt.err, row.target)
		}
	}
	for _, row := range errorTable {
		if !tested[row.target] {
			t.Errorf("no case for the row answering %d %s", row.status, row.code)
		}
	}
}

func TestAnErrorAfterTheResponseStartedEndsItUnchanged(t *testing.T) {
	got := replyTo(func(c *gin.Context) error {
		c.String(http.StatusPartialContent, "first bytes")
		return fmt.Errorf("copy the response: %w", errors.New("connection reset by peer"))
	})
	if want := (reply{http.StatusPartialContent, "first bytes", "", ""}); got != want {
		t.Errorf("got %+v, want the started reply left as it was: %+v", got, want)
	}
}
