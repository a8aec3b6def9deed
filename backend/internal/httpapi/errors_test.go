package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"

	"github.com/gin-gonic/gin"

	"github.com/exportstream/exportstream/backend/internal/eventmux"
	"github.com/exportstream/exportstream/backend/internal/job"
)

// answer serves one request whose handler returns err, through handle.
func answer(t *testing.T, h func(c *gin.Context) error) *httptest.ResponseRecorder {
	t.Helper()
	s := &Server{log: slog.New(slog.DiscardHandler)}
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.GET("/", s.handle(h))
	w := httptest.NewRecorder()
	r.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/", nil))
	return w
}

func TestEveryErrorIsAnsweredWithTheStatusAndCodeOfItsRow(t *testing.T) {
	var syntax *json.SyntaxError
	if err := json.Unmarshal([]byte(`{"rows":`), new(job.Request)); !errors.As(err, &syntax) {
		t.Fatalf("no syntax error to test with: %v", err)
	}
	tests := []struct {
		name       string
		err        error
		status     int
		code       string
		message    string
		retryAfter string
	}{
		{"a handler's own answer", &apiError{http.StatusBadRequest, "INVALID_OWNER", "bad owner"}, 400, "INVALID_OWNER", "bad owner", ""},
		{"a request out of range", fmt.Errorf("decode: %w", &job.ValidationError{Field: "rows", Reason: "must be positive"}), 422, "VALIDATION_FAILED", "rows: must be positive", ""},
		{"a JSON value of the wrong type", fmt.Errorf("decode: %w", &json.UnmarshalTypeError{Field: "rows", Type: reflect.TypeFor[int]()}), 422, "VALIDATION_FAILED", "rows: must be a int", ""},
		{"a body over the limit", fmt.Errorf("read body: %w", &http.MaxBytesError{Limit: 1 << 20}), 413, "BODY_TOO_LARGE", "request body must be at most 1048576 bytes", ""},
		{"a body that is not JSON", fmt.Errorf("decode: %w", syntax), 400, "INVALID_JSON", "request body is not valid JSON: " + syntax.Error(), ""},
		{"a malformed code", fmt.Errorf("lookup: %w", job.ErrInvalidCode), 400, "INVALID_CODE", "lookup: " + job.ErrInvalidCode.Error(), ""},
		{"an unknown export", fmt.Errorf("lookup: %w", job.ErrNotFound), 404, "NOT_FOUND", "lookup: " + job.ErrNotFound.Error(), ""},
		{"a file not ready", fmt.Errorf("export is PENDING: %w", job.ErrNotReady), 409, "NOT_READY", "export is PENDING: " + job.ErrNotReady.Error(), ""},
		{"an expired file", fmt.Errorf("file: %w", job.ErrGone), 410, "GONE", "file: " + job.ErrGone.Error(), ""},
		{"a reused idempotency key", fmt.Errorf("create export: %w", job.ErrKeyReused), 409, "IDEMPOTENCY_KEY_REUSED", "create export: " + job.ErrKeyReused.Error(), ""},
		{"the key of a deleted export", fmt.Errorf("create export: %w", job.ErrKeyOfDeletedExport), 409, "EXPORT_DELETED", "create export: " + job.ErrKeyOfDeletedExport.Error(), ""},
		{"an owner at its cap", fmt.Errorf("create export: %w", job.ErrTooManyActive), 429, "TOO_MANY_ACTIVE", "create export: " + job.ErrTooManyActive.Error(), "5"},
		{"a full queue", fmt.Errorf("submit: %w", job.ErrQueueFull), 503, "QUEUE_FULL", "submit: " + job.ErrQueueFull.Error(), "5"},
		{"an unreachable store, its address unsaid", fmt.Errorf("redis 10.0.0.7:6379: %w", job.ErrStoreUnavailable), 503, "STORE_UNAVAILABLE", job.ErrStoreUnavailable.Error(), "5"},
		{"a full disk, its path unsaid", fmt.Errorf("/var/lib/exports: %w", job.ErrStorageFull), 507, "INSUFFICIENT_STORAGE", job.ErrStorageFull.Error(), "5"},
		{"a read-only disk, its path unsaid", fmt.Errorf("/var/lib/exports: %w", job.ErrStorageReadOnly), 503, "STORAGE_READ_ONLY", job.ErrStorageReadOnly.Error(), "5"},
		{"an unknown event stream", fmt.Errorf("subscribe: %w", eventmux.ErrStreamNotFound), 404, "STREAM_NOT_FOUND", eventmux.ErrStreamNotFound.Error(), ""},
		{"a stream at its subscription cap", fmt.Errorf("subscribe: %w", eventmux.ErrTooManySubscriptions), 429, "TOO_MANY_SUBSCRIPTIONS", eventmux.ErrTooManySubscriptions.Error(), "5"},
		{"a replica that did not answer", fmt.Errorf("subscribe: %w", eventmux.ErrNoAnswer), 503, "STREAM_UNAVAILABLE", eventmux.ErrNoAnswer.Error(), "5"},
		{"a draining server", fmt.Errorf("ready: %w", job.ErrUnavailable), 503, "UNAVAILABLE", "ready: " + job.ErrUnavailable.Error(), "5"},
		{"an unknown error, its text unsaid", fmt.Errorf("open /secret/path: %w", errors.New("permission denied")), 500, "INTERNAL", "internal error", ""},
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
		})
		for i, row := range errorTable {
			if _, ok := row.match(tt.err); ok {
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
		c.String(http.StatusOK, "data: first\n\n")
		return errors.New("the store went away mid-stream")
	})
	if w.Code != http.StatusOK || w.Body.String() != "data: first\n\n" {
		t.Errorf("got %d %q, want the started 200 left as it was", w.Code, w.Body.String())
	}
}
