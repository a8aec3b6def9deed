package httpapi_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	sse "github.com/tmaxmax/go-sse"

	"github.com/exportstream/exportstream/backend/internal/httpapi"
	"github.com/exportstream/exportstream/backend/internal/job"
	"github.com/exportstream/exportstream/backend/internal/store"
	"github.com/exportstream/exportstream/backend/internal/worker"
)

// testBackend is the real backend handler on a loopback socket.
type testBackend struct {
	url   string
	store *watchedStore
	pool  *worker.Pool
	api   *httpapi.Server
}

type backendOption func(*httpapi.Config, *worker.Config)

// startBackend runs the real backend handler on a loopback socket.
func startBackend(t *testing.T, opts ...backendOption) string {
	t.Helper()
	return newBackend(t, opts...).url
}

func newBackend(t *testing.T, opts ...backendOption) *testBackend {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	st := store.NewMemory()
	wcfg := worker.Config{Workers: 4, QueueSize: 16, FilesDir: t.TempDir(), ProgressInterval: 20 * time.Millisecond, Retention: time.Hour}
	hcfg := httpapi.Config{Store: st, Logger: log, Heartbeat: 15 * time.Second, Retry: 2 * time.Second, Scenarios: true}
	generation := httpapi.GenerationHistogram() // wired as cmd/backend does
	wcfg.OnFinish = httpapi.ObserveGeneration(generation)
	for _, o := range opts {
		o(&hcfg, &wcfg)
	}
	watched := &watchedStore{Store: hcfg.Store, wakers: map[store.Waker]*countedWaker{}} // an option may have set the store
	hcfg.Store = watched
	pool, err := worker.New(hcfg.Store, wcfg, log)
	if err != nil {
		t.Fatal(err)
	}
	hcfg.Pool = pool
	api := httpapi.New(hcfg)
	api.Register(generation)
	srv := httptest.NewServer(api)
	t.Cleanup(func() {
		api.CloseStreams()
		srv.Close()
		pool.Close()
	})
	return &testBackend{url: srv.URL, store: watched, pool: pool, api: api}
}

// watchedStore is a real store that counts the wakers registered with it
// (by WatchNotify, until woken or unwatched): what subscriptions leave
// behind in the store.
type watchedStore struct {
	store.Store
	mu     sync.Mutex
	wakers map[store.Waker]*countedWaker
}

// countedWaker is what the wrapped store wakes for w.
type countedWaker struct {
	s *watchedStore
	w store.Waker
}

func (c *countedWaker) Wake() {
	c.s.mu.Lock()
	if c.s.wakers[c.w] == c {
		delete(c.s.wakers, c.w)
	}
	c.s.mu.Unlock()
	c.w.Wake()
}

func (s *watchedStore) WatchNotify(ctx context.Context, code string, w store.Waker) (job.Job, error) {
	c := &countedWaker{s: s, w: w}
	s.mu.Lock()
	s.wakers[w] = c
	s.mu.Unlock()
	j, err := s.Store.WatchNotify(ctx, code, c)
	if err != nil {
		s.mu.Lock()
		if s.wakers[w] == c {
			delete(s.wakers, w)
		}
		s.mu.Unlock()
	}
	return j, err
}

func (s *watchedStore) Unwatch(code string, w store.Waker) {
	s.mu.Lock()
	c, ok := s.wakers[w]
	delete(s.wakers, w)
	s.mu.Unlock()
	if ok {
		s.Store.Unwatch(code, c)
	}
}

// watching is how many wakers the store holds.
func (s *watchedStore) watching() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.wakers)
}

func createExport(t *testing.T, base, body string) (job.Job, *http.Response) {
	t.Helper()
	resp, err := http.Post(base+"/v1/exports", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	var j job.Job
	if resp.StatusCode == http.StatusAccepted {
		if err := json.NewDecoder(resp.Body).Decode(&j); err != nil {
			t.Fatal(err)
		}
	}
	return j, resp
}

type event struct {
	id  int64
	job job.Job
}

// readEvents reads a whole event stream (until the server ends it) and
// returns its events and the raw first line.
func readEvents(t *testing.T, url string, header http.Header) (*http.Response, string, []event) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return resp, "", nil
	}
	br := bufio.NewReader(resp.Body)
	first, _ := br.ReadString('\n')
	var events []event
	for ev, err := range sse.Read(br, nil) {
		if err != nil {
			t.Fatalf("read stream: %v", err)
		}
		id, err := strconv.ParseInt(ev.LastEventID, 10, 64)
		if err != nil {
			t.Fatalf("event id %q is not a seq: %v", ev.LastEventID, err)
		}
		var j job.Job
		if err := json.Unmarshal([]byte(ev.Data), &j); err != nil {
			t.Fatalf("event data %q: %v", ev.Data, err)
		}
		events = append(events, event{id, j})
	}
	return resp, first, events
}

// expectedSHA256 recomputes a file from its code, independently of job.AppendRow.
func expectedSHA256(code string, rows int) (string, int64) {
	h := sha256.New()
	var n int64
	w := func(s string) { m, _ := io.WriteString(h, s); n += int64(m) }
	w("id,code,item,quantity,amount_cents\n")
	for i := 1; i <= rows; i++ {
		f := fnv.New64a()
		_, _ = fmt.Fprintf(f, "%s:%d", code, i)
		v := f.Sum64()
		w(fmt.Sprintf("%d,%s,item-%d,%d,%d\n", i, code, v%1000, v%100+1, v%1000000))
	}
	return hex.EncodeToString(h.Sum(nil)), n
}

func TestAnExportStreamsOrderedEventsEndsCompletedAndDownloadsTheRightFile(t *testing.T) {
	base := startBackend(t)
	created, resp := createExport(t, base, `{"rows":3000,"durationMs":600,"filename":"report.csv"}`)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("create: status %d", resp.StatusCode)
	}
	if _, err := job.ParseCode(created.Code); err != nil {
		t.Fatalf("code %q is not a UUID", created.Code)
	}
	if got, want := resp.Header.Get("Location"), "/v1/exports/"+created.Code; got != want {
		t.Errorf("Location = %q, want %q", got, want)
	}
	if created.Status != job.StatusPending || created.RowsTotal != 3000 {
		t.Errorf("created job = %+v, want PENDING with 3000 rows", created)
	}

	resp, first, events := readEvents(t, base+"/v1/exports/"+created.Code+"/events", nil)
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("Content-Type = %q", ct)
	}
	if resp.Header.Get("Cache-Control") != "no-cache" || resp.Header.Get("X-Accel-Buffering") != "no" {
		t.Errorf("missing SSE headers: %v", resp.Header)
	}
	if first != "retry: 2000\n" {
		t.Errorf("first line = %q, want the retry field", first)
	}
	if len(events) < 3 {
		t.Fatalf("got %d events, want at least a snapshot, progress and COMPLETED", len(events))
	}
	completed, sawProgress := 0, false
	for i, ev := range events {
		if ev.id != ev.job.Seq {
			t.Errorf("event %d: id %d != seq %d", i, ev.id, ev.job.Seq)
		}
		if i > 0 && ev.id <= events[i-1].id {
			t.Errorf("event %d: id %d not after %d", i, ev.id, events[i-1].id)
		}
		if ev.job.Status == job.StatusInProgress && ev.job.Progress > 0 && ev.job.Progress < 100 {
			sawProgress = true
		}
		if ev.job.Status == job.StatusCompleted {
			completed++
		}
	}
	if !sawProgress {
		t.Error("no IN_PROGRESS event with progress between 0 and 100")
	}
	last := events[len(events)-1].job
	if completed != 1 || last.Status != job.StatusCompleted {
		t.Fatalf("want exactly one COMPLETED, last; got %d, last %s", completed, last.Status)
	}
	want, size := expectedSHA256(created.Code, 3000)
	if last.File == nil || last.File.SHA256 != want || last.File.Size != size {
		t.Fatalf("file = %+v, want sha256 %s size %d", last.File, want, size)
	}
	if last.File.URL != "/v1/exports/"+created.Code+"/file" || last.File.Name != "report.csv" {
		t.Errorf("file url/name = %q %q", last.File.URL, last.File.Name)
	}

	dl, err := http.Get(base + last.File.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = dl.Body.Close() }()
	body, _ := io.ReadAll(dl.Body)
	sum := sha256.Sum256(body)
	if dl.StatusCode != http.StatusOK || hex.EncodeToString(sum[:]) != want {
		t.Fatalf("download: status %d, sha256 %x, want %s", dl.StatusCode, sum, want)
	}
	if cd := dl.Header.Get("Content-Disposition"); cd != `attachment; filename="report.csv"; filename*=UTF-8''report.csv` {
		t.Errorf("Content-Disposition = %q", cd)
	}
	if dl.Header.Get("Content-Length") != strconv.FormatInt(size, 10) {
		t.Errorf("Content-Length = %q, want %d", dl.Header.Get("Content-Length"), size)
	}
}

func TestAnExportWithFailAtEndsFailedThere(t *testing.T) {
	base := startBackend(t)
	created, _ := createExport(t, base, `{"rows":1000,"durationMs":400,"failAt":50}`)
	_, _, events := readEvents(t, base+"/v1/exports/"+created.Code+"/events", nil)
	last := events[len(events)-1].job
	if last.Status != job.StatusFailed || last.Error == nil || last.Error.Code != "GENERATION_FAILED" {
		t.Fatalf("last event = %+v, want FAILED with GENERATION_FAILED", last)
	}
	if last.File != nil {
		t.Error("a FAILED job has a file")
	}
	for _, ev := range events {
		if ev.job.Progress > 50 {
			t.Errorf("progress %d went past failAt 50", ev.job.Progress)
		}
	}
	resp, err := http.Get(base + "/v1/exports/" + created.Code + "/file")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusConflict {
		t.Errorf("file of a FAILED job: status %d, want 409", resp.StatusCode)
	}
}

func TestTheFileURLFollowsTheForwardedPrefix(t *testing.T) {
	base := startBackend(t)
	created, _ := createExport(t, base, `{"rows":10,"durationMs":0}`)
	_, _, events := readEvents(t, base+"/v1/exports/"+created.Code+"/events", http.Header{"X-Forwarded-Prefix": {"/api"}})
	if f := events[len(events)-1].job.File; f == nil || f.URL != "/api/exports/"+created.Code+"/file" {
		t.Fatalf("file = %+v, want url under /api", f)
	}
}

func TestAResumedStreamSendsOnlyNewerEventsAnd204AfterTheEnd(t *testing.T) {
	base := startBackend(t)
	created, _ := createExport(t, base, `{"rows":100,"durationMs":0}`)
	url := base + "/v1/exports/" + created.Code + "/events"
	_, _, events := readEvents(t, url, nil)
	last := events[len(events)-1]

	_, _, resumed := readEvents(t, url, http.Header{"Last-Event-ID": {strconv.FormatInt(last.id-1, 10)}})
	if len(resumed) != 1 || resumed[0].id != last.id {
		t.Errorf("resume from %d: got %v, want only event %d", last.id-1, resumed, last.id)
	}
	resp, _, _ := readEvents(t, url, http.Header{"Last-Event-ID": {strconv.FormatInt(last.id, 10)}})
	if resp.StatusCode != http.StatusNoContent {
		t.Errorf("resume at the terminal seq: status %d, want 204", resp.StatusCode)
	}
	_, _, all := readEvents(t, url, http.Header{"Last-Event-ID": {"not-a-number"}})
	if len(all) != 1 || all[0].id != last.id {
		t.Errorf("malformed Last-Event-ID: got %d events, want the snapshot only", len(all))
	}
}

func TestTheFileIsNotReadyWhileTheExportRuns(t *testing.T) {
	base := startBackend(t)
	created, _ := createExport(t, base, `{"rows":10,"durationMs":60000}`)
	resp, err := http.Get(base + "/v1/exports/" + created.Code + "/file")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	assertError(t, resp, http.StatusConflict, "NOT_READY")
}

func assertError(t *testing.T, resp *http.Response, status int, code string) {
	t.Helper()
	var body struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("error body is not JSON: %v", err)
	}
	if resp.StatusCode != status || body.Error.Code != code || body.Error.Message == "" {
		t.Errorf("got %d %+v, want %d %s with a message", resp.StatusCode, body.Error, status, code)
	}
}

func TestBadRequestsGetAClearJSONError(t *testing.T) {
	base := startBackend(t)
	unknown := "0b8f2f5e-8a57-4c1b-9f6e-2d0c7f4b9a10"
	tests := []struct {
		name, method, path, contentType, body string
		status                                int
		code                                  string
	}{
		{"a code that is not a UUID", "GET", "/v1/exports/nope", "", "", 400, "INVALID_CODE"},
		{"events of a code that is not a UUID", "GET", "/v1/exports/123/events", "", "", 400, "INVALID_CODE"},
		{"file of a code that is not a UUID", "GET", "/v1/exports/x/file", "", "", 400, "INVALID_CODE"},
		{"an unknown code", "GET", "/v1/exports/" + unknown, "", "", 404, "NOT_FOUND"},
		{"events of an unknown code", "GET", "/v1/exports/" + unknown + "/events", "", "", 404, "NOT_FOUND"},
		{"the file of an unknown code", "GET", "/v1/exports/" + unknown + "/file", "", "", 404, "NOT_FOUND"},
		{"a body that is not JSON", "POST", "/v1/exports", "application/json", "rows=5", 400, "INVALID_JSON"},
		{"a truncated body", "POST", "/v1/exports", "application/json", `{"rows":5`, 400, "INVALID_JSON"},
		{"an empty body", "POST", "/v1/exports", "application/json", ``, 400, "INVALID_JSON"},
		{"two objects", "POST", "/v1/exports", "application/json", `{"rows":5,"durationMs":1}{}`, 400, "INVALID_JSON"},
		{"an unknown field", "POST", "/v1/exports", "application/json", `{"rows":5,"durationMs":1,"colour":"red"}`, 400, "INVALID_JSON"},
		{"rows as a string", "POST", "/v1/exports", "application/json", `{"rows":"5","durationMs":1}`, 422, "VALIDATION_FAILED"},
		{"zero rows", "POST", "/v1/exports", "application/json", `{"rows":0,"durationMs":1}`, 422, "VALIDATION_FAILED"},
		{"too many rows", "POST", "/v1/exports", "application/json", `{"rows":10000001,"durationMs":1}`, 422, "VALIDATION_FAILED"},
		{"a duration over an hour", "POST", "/v1/exports", "application/json", `{"rows":5,"durationMs":3600001}`, 422, "VALIDATION_FAILED"},
		{"failAt 0", "POST", "/v1/exports", "application/json", `{"rows":5,"durationMs":1,"failAt":0}`, 422, "VALIDATION_FAILED"},
		{"failAt as a float", "POST", "/v1/exports", "application/json", `{"rows":5,"durationMs":1,"failAt":5.5}`, 422, "VALIDATION_FAILED"},
		{"an Idempotency-Key over 128 characters", "POST", "/v1/exports", "application/json", `{"rows":5,"durationMs":1}`, 400, "INVALID_IDEMPOTENCY_KEY"},
		{"an owner with a space", "GET", "/v1/exports", "", "", 400, "INVALID_OWNER"},
		{"delete of a code that is not a UUID", "DELETE", "/v1/exports/nope", "", "", 400, "INVALID_CODE"},
		{"delete of an unknown code", "DELETE", "/v1/exports/" + unknown, "", "", 404, "NOT_FOUND"},
		{"a negative duration", "POST", "/v1/exports", "application/json", `{"rows":5,"durationMs":-1}`, 422, "VALIDATION_FAILED"},
		{"failAt 100", "POST", "/v1/exports", "application/json", `{"rows":5,"durationMs":1,"failAt":100}`, 422, "VALIDATION_FAILED"},
		{"a filename too long", "POST", "/v1/exports", "application/json", `{"rows":5,"durationMs":1,"filename":"` + strings.Repeat("a", 201) + `"}`, 422, "VALIDATION_FAILED"},
		{"a form body", "POST", "/v1/exports", "application/x-www-form-urlencoded", "rows=5", 415, "UNSUPPORTED_MEDIA_TYPE"},
		{"a body over 1 MiB", "POST", "/v1/exports", "application/json", `{"filename":"` + strings.Repeat("a", 1<<20) + `"}`, 413, "BODY_TOO_LARGE"},
		{"an unknown route", "GET", "/v1/nothing", "", "", 404, "NO_ROUTE"},
		{"an almost-UUID one character short", "GET", "/v1/exports/" + unknown[:35], "", "", 400, "INVALID_CODE"},
		{"an almost-UUID one character long", "GET", "/v1/exports/" + unknown + "0", "", "", 400, "INVALID_CODE"},
		{"a UUID in braces", "GET", "/v1/exports/{" + unknown + "}", "", "", 400, "INVALID_CODE"},
		{"a UUID without dashes", "GET", "/v1/exports/" + strings.ReplaceAll(unknown, "-", ""), "", "", 400, "INVALID_CODE"},
		{"a UUID with a non-hex letter", "GET", "/v1/exports/" + "g" + unknown[1:], "", "", 400, "INVALID_CODE"},
		{"an upper-case unknown UUID", "GET", "/v1/exports/" + strings.ToUpper(unknown), "", "", 404, "NOT_FOUND"},
		{"an encoded path traversal as code", "GET", "/v1/exports/..%2F..%2Fetc%2Fpasswd/file", "", "", 404, "NO_ROUTE"},
		{"a code with an encoded NUL", "GET", "/v1/exports/%00" + unknown[1:], "", "", 400, "INVALID_CODE"},
		{"HEAD on an event stream", "HEAD", "/v1/exports/" + unknown + "/events", "", "", 405, ""},
		{"POST to a job", "POST", "/v1/exports/" + unknown, "application/json", "{}", 405, "METHOD_NOT_ALLOWED"},
		{"rows as a huge number", "POST", "/v1/exports", "application/json", `{"rows":1e400,"durationMs":1}`, 422, "VALIDATION_FAILED"},
		{"rows negative", "POST", "/v1/exports", "application/json", `{"rows":-5,"durationMs":1}`, 422, "VALIDATION_FAILED"},
		{"rows null", "POST", "/v1/exports", "application/json", `{"rows":null,"durationMs":1}`, 422, "VALIDATION_FAILED"},
		{"a JSON array", "POST", "/v1/exports", "application/json", `[{"rows":5,"durationMs":1}]`, 422, "VALIDATION_FAILED"},
		{"a JSON string", "POST", "/v1/exports", "application/json", `"rows"`, 422, "VALIDATION_FAILED"},
		{"filename as a number", "POST", "/v1/exports", "application/json", `{"rows":5,"durationMs":1,"filename":7}`, 422, "VALIDATION_FAILED"},
		{"a text/plain body", "POST", "/v1/exports", "text/plain", `{"rows":5,"durationMs":1}`, 415, "UNSUPPORTED_MEDIA_TYPE"},
		{"a malformed Content-Type", "POST", "/v1/exports", "application/json; charset", `{"rows":5,"durationMs":1}`, 415, "UNSUPPORTED_MEDIA_TYPE"},
		{"invalid UTF-8 in JSON", "POST", "/v1/exports", "application/json", "{\"rows\":5,\"durationMs\":1,\"filename\":\"\xff\"", 400, "INVALID_JSON"},
		{"a wrong method", "PUT", "/v1/exports", "", "", 405, "METHOD_NOT_ALLOWED"},
		{"errorCode without failAt", "POST", "/v1/exports", "application/json", `{"rows":5,"durationMs":1,"errorCode":"QUOTA"}`, 422, "VALIDATION_FAILED"},
		{"errorCode in lower case", "POST", "/v1/exports", "application/json", `{"rows":5,"durationMs":1,"failAt":5,"errorCode":"quota"}`, 422, "VALIDATION_FAILED"},
		{"errorCode over 64 characters", "POST", "/v1/exports", "application/json", `{"rows":5,"durationMs":1,"failAt":5,"errorCode":"` + strings.Repeat("A", 65) + `"}`, 422, "VALIDATION_FAILED"},
		{"stallAt without stallMs", "POST", "/v1/exports", "application/json", `{"rows":5,"durationMs":1,"stallAt":50}`, 422, "VALIDATION_FAILED"},
		{"stallMs without stallAt", "POST", "/v1/exports", "application/json", `{"rows":5,"durationMs":1,"stallMs":50}`, 422, "VALIDATION_FAILED"},
		{"stallAt 100", "POST", "/v1/exports", "application/json", `{"rows":5,"durationMs":1,"stallAt":100,"stallMs":5}`, 422, "VALIDATION_FAILED"},
		{"a negative startDelayMs", "POST", "/v1/exports", "application/json", `{"rows":5,"durationMs":1,"startDelayMs":-1}`, 422, "VALIDATION_FAILED"},
		{"a startDelayMs over an hour", "POST", "/v1/exports", "application/json", `{"rows":5,"durationMs":1,"startDelayMs":3600001}`, 422, "VALIDATION_FAILED"},
		{"a stallMs over an hour", "POST", "/v1/exports", "application/json", `{"rows":5,"durationMs":1,"stallAt":5,"stallMs":3600001}`, 422, "VALIDATION_FAILED"},
		{"a negative expireAfterMs", "POST", "/v1/exports", "application/json", `{"rows":5,"durationMs":1,"expireAfterMs":-5}`, 422, "VALIDATION_FAILED"},
		{"rowsPerSecond beside durationMs", "POST", "/v1/exports", "application/json", `{"rows":5,"durationMs":1,"rowsPerSecond":5}`, 422, "VALIDATION_FAILED"},
		{"rowsPerSecond over an hour of rows", "POST", "/v1/exports", "application/json", `{"rows":3601,"rowsPerSecond":1}`, 422, "VALIDATION_FAILED"},
		{"dropStreamAt 100", "POST", "/v1/exports", "application/json", `{"rows":5,"durationMs":1,"dropStreamAt":100}`, 422, "VALIDATION_FAILED"},
		{"a negative rowsPerSecond", "POST", "/v1/exports", "application/json", `{"rows":5,"rowsPerSecond":-1}`, 422, "VALIDATION_FAILED"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequestWithContext(t.Context(), tt.method, base+tt.path, strings.NewReader(tt.body))
			if tt.contentType != "" {
				req.Header.Set("Content-Type", tt.contentType)
			}
			switch tt.code {
			case "INVALID_IDEMPOTENCY_KEY":
				req.Header.Set("Idempotency-Key", strings.Repeat("k", 129))
			case "INVALID_OWNER":
				req.Header.Set("X-Export-Owner", "two words")
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = resp.Body.Close() }()
			if tt.method == "HEAD" {
				if resp.StatusCode != tt.status || resp.Header.Get("Allow") != "GET" {
					t.Errorf("HEAD: %d Allow %q, want %d Allow GET", resp.StatusCode, resp.Header.Get("Allow"), tt.status)
				}
				return
			}
			assertError(t, resp, tt.status, tt.code)
		})
	}
	// None of it stored anything.
	resp, err := http.Get(base + "/v1/exports")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	var list struct{ Exports []job.Job }
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil || len(list.Exports) != 0 {
		t.Errorf("after the bad requests the store holds %d exports (%v), want 0", len(list.Exports), err)
	}
}
