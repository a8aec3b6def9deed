package httpapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	sse "github.com/tmaxmax/go-sse"

	"github.com/exportstream/exportstream/backend/internal/httpapi"
	"github.com/exportstream/exportstream/backend/internal/job"
	"github.com/exportstream/exportstream/backend/internal/store"
	"github.com/exportstream/exportstream/backend/internal/worker"
)

// call sends one request and decodes a JSON body into out (if non-nil and JSON).
func call(t *testing.T, method, url, body string, header http.Header, out any) *http.Response {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), method, url, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: body %q: %v", method, url, b, err)
		}
	}
	return resp
}

func owner(o string) http.Header { return http.Header{"X-Export-Owner": {o}} }

// follow streams a job's events into a channel until the server ends the stream.
func follow(t *testing.T, url string, header http.Header) <-chan job.Job {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		cancel()
		t.Fatalf("events: %v %v", resp, err)
	}
	ch := make(chan job.Job, 256)
	go func() {
		defer cancel()
		defer close(ch)
		defer func() { _ = resp.Body.Close() }()
		for ev, err := range sse.Read(resp.Body, nil) {
			if err != nil {
				return
			}
			var j job.Job
			if json.Unmarshal([]byte(ev.Data), &j) == nil {
				ch <- j
			}
		}
	}()
	return ch
}

// until reads events until one satisfies ok, and returns it.
func until(t *testing.T, events <-chan job.Job, ok func(job.Job) bool) job.Job {
	t.Helper()
	for j := range events {
		if ok(j) {
			return j
		}
	}
	t.Fatal("stream ended before the awaited event")
	return job.Job{}
}

func running(j job.Job) bool { return j.Status == job.StatusInProgress }

func last(events <-chan job.Job) job.Job {
	var j job.Job
	for e := range events {
		j = e
	}
	return j
}

func TestTheSameIdempotencyKeyAndBodyGiveTheSameExport(t *testing.T) {
	base := startBackend(t)
	h := http.Header{"Idempotency-Key": {"order-42"}, "X-Export-Owner": {"alice"}}
	var first, again, other job.Job
	if r := call(t, "POST", base+"/v1/exports", `{"rows":10,"durationMs":0}`, h, &first); r.StatusCode != http.StatusAccepted {
		t.Fatalf("first create: %d", r.StatusCode)
	}
	r := call(t, "POST", base+"/v1/exports", `{"rows":10,"durationMs":0}`, h, &again)
	if r.StatusCode != http.StatusOK || again.Code != first.Code || r.Header.Get("Location") != "/v1/exports/"+first.Code {
		t.Errorf("replay: status %d, code %s, Location %q; want 200 with the first export %s", r.StatusCode, again.Code, r.Header.Get("Location"), first.Code)
	}
	var e struct{ Error struct{ Code string } }
	if r := call(t, "POST", base+"/v1/exports", `{"rows":11,"durationMs":0}`, h, &e); r.StatusCode != http.StatusConflict || e.Error.Code != "IDEMPOTENCY_KEY_REUSED" {
		t.Errorf("same key, other body: %d %s; want 409 IDEMPOTENCY_KEY_REUSED", r.StatusCode, e.Error.Code)
	}
	bob := http.Header{"Idempotency-Key": {"order-42"}, "X-Export-Owner": {"bob"}}
	if r := call(t, "POST", base+"/v1/exports", `{"rows":10,"durationMs":0}`, bob, &other); r.StatusCode != http.StatusAccepted || other.Code == first.Code {
		t.Errorf("another owner's same key: %d, code %s; want a new export", r.StatusCode, other.Code)
	}
}

func TestDeleteCancelsARunningExportThenDeletesIt(t *testing.T) {
	base := startBackend(t)
	var j job.Job
	call(t, "POST", base+"/v1/exports", `{"rows":1000,"durationMs":60000}`, nil, &j)
	events := follow(t, base+"/v1/exports/"+j.Code+"/events", nil)
	until(t, events, running)

	var cancelled job.Job
	if r := call(t, "DELETE", base+"/v1/exports/"+j.Code, "", nil, &cancelled); r.StatusCode != http.StatusOK || cancelled.Status != job.StatusCancelled {
		t.Fatalf("cancel: %d %s, want 200 CANCELLED", r.StatusCode, cancelled.Status)
	}
	if end := last(events); end.Status != job.StatusCancelled || end.Seq != cancelled.Seq {
		t.Errorf("stream ended with %s seq %d, want CANCELLED seq %d", end.Status, end.Seq, cancelled.Seq)
	}
	var now job.Job
	call(t, "GET", base+"/v1/exports/"+j.Code, "", nil, &now)
	if now.Status != job.StatusCancelled || now.Seq != cancelled.Seq {
		t.Errorf("after cancel the job is %s seq %d: the worker changed it after cancellation", now.Status, now.Seq)
	}
	if r := call(t, "GET", base+"/v1/exports/"+j.Code+"/file", "", nil, nil); r.StatusCode != http.StatusConflict {
		t.Errorf("file of a cancelled export: %d, want 409", r.StatusCode)
	}
	if r := call(t, "DELETE", base+"/v1/exports/"+j.Code, "", nil, nil); r.StatusCode != http.StatusNoContent {
		t.Errorf("delete of a cancelled export: %d, want 204", r.StatusCode)
	}
	if r := call(t, "GET", base+"/v1/exports/"+j.Code, "", nil, nil); r.StatusCode != http.StatusNotFound {
		t.Errorf("get after delete: %d, want 404", r.StatusCode)
	}
}

func TestDeletingAFinishedExportRemovesItsFile(t *testing.T) {
	b := newBackend(t)
	var j job.Job
	call(t, "POST", b.url+"/v1/exports", `{"rows":10,"durationMs":0}`, nil, &j)
	if end := last(follow(t, b.url+"/v1/exports/"+j.Code+"/events", nil)); end.Status != job.StatusCompleted {
		t.Fatalf("export ended %s", end.Status)
	}
	if r := call(t, "DELETE", b.url+"/v1/exports/"+j.Code, "", nil, nil); r.StatusCode != http.StatusNoContent {
		t.Fatalf("delete: %d, want 204", r.StatusCode)
	}
	if r := call(t, "GET", b.url+"/v1/exports/"+j.Code+"/file", "", nil, nil); r.StatusCode != http.StatusNotFound {
		t.Errorf("file after delete: %d, want 404", r.StatusCode)
	}
	if _, err := os.Stat(b.pool.FilePath(j.Code)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the file is still on disk: %v", err)
	}
	if _, err := b.store.Get(t.Context(), j.Code); err == nil {
		t.Error("the store still has the deleted export")
	}
}

func TestAnotherOwnersExportIsNotFound(t *testing.T) {
	base := startBackend(t)
	var j job.Job
	call(t, "POST", base+"/v1/exports", `{"rows":10,"durationMs":0}`, owner("alice"), &j)
	last(follow(t, base+"/v1/exports/"+j.Code+"/events", owner("alice")))
	for _, path := range []string{"", "/events", "/file"} {
		if r := call(t, "GET", base+"/v1/exports/"+j.Code+path, "", owner("mallory"), nil); r.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s as another owner: %d, want 404", path, r.StatusCode)
		}
	}
	if r := call(t, "DELETE", base+"/v1/exports/"+j.Code, "", owner("mallory"), nil); r.StatusCode != http.StatusNotFound {
		t.Errorf("DELETE as another owner: %d, want 404", r.StatusCode)
	}
	var mine, theirs, peek struct{ Exports []job.Job }
	call(t, "GET", base+"/v1/exports", "", owner("alice"), &mine)
	call(t, "GET", base+"/v1/exports", "", owner("mallory"), &theirs)
	call(t, "GET", base+"/v1/exports?owner=alice", "", owner("mallory"), &peek)
	if len(mine.Exports) != 1 || mine.Exports[0].Code != j.Code || len(theirs.Exports) != 0 || len(peek.Exports) != 0 {
		t.Errorf("lists: alice %d, mallory %d, mallory asking for alice %d; want 1, 0, 0", len(mine.Exports), len(theirs.Exports), len(peek.Exports))
	}
}

func TestTheListIsNewestFirst(t *testing.T) {
	base := startBackend(t)
	var codes []string
	for range 3 {
		var j job.Job
		call(t, "POST", base+"/v1/exports", `{"rows":1,"durationMs":0}`, owner("o"), &j)
		codes = append(codes, j.Code)
	}
	var list struct{ Exports []job.Job }
	call(t, "GET", base+"/v1/exports", "", owner("o"), &list)
	if len(list.Exports) != 3 || list.Exports[0].Code != codes[2] || list.Exports[2].Code != codes[0] {
		t.Errorf("list %v, want newest first of %v", list.Exports, codes)
	}
}

func TestEveryV1CallNeedsTheServiceTokenWhenOneIsSet(t *testing.T) {
	base := startBackend(t, func(h *httpapi.Config, _ *worker.Config) { h.ServiceToken = "s3cret" })
	for name, h := range map[string]http.Header{
		"no token":    nil,
		"wrong token": {"Authorization": {"Bearer guess"}},
		"bare token":  {"Authorization": {"s3cret"}},
	} {
		if r := call(t, "POST", base+"/v1/exports", `{"rows":1,"durationMs":0}`, h, nil); r.StatusCode != http.StatusUnauthorized {
			t.Errorf("create with %s: %d, want 401", name, r.StatusCode)
		}
		if r := call(t, "GET", base+"/v1/exports", "", h, nil); r.StatusCode != http.StatusUnauthorized {
			t.Errorf("list with %s: %d, want 401", name, r.StatusCode)
		}
	}
	if r := call(t, "POST", base+"/v1/exports", `{"rows":1,"durationMs":0}`, http.Header{"Authorization": {"Bearer s3cret"}}, nil); r.StatusCode != http.StatusAccepted {
		t.Errorf("create with the token: %d, want 202", r.StatusCode)
	}
	if r := call(t, "GET", base+"/healthz", "", nil, nil); r.StatusCode != http.StatusOK {
		t.Errorf("healthz needs no token: %d", r.StatusCode)
	}
}

func TestAFullQueueAnswers503WithRetryAfter(t *testing.T) {
	base := startBackend(t, func(_ *httpapi.Config, w *worker.Config) { w.Workers, w.QueueSize = 1, 1 })
	var first job.Job
	call(t, "POST", base+"/v1/exports", `{"rows":10,"durationMs":60000}`, nil, &first)
	until(t, follow(t, base+"/v1/exports/"+first.Code+"/events", nil), running) // the only worker is busy
	if r := call(t, "POST", base+"/v1/exports", `{"rows":10,"durationMs":0}`, nil, nil); r.StatusCode != http.StatusAccepted {
		t.Fatalf("second create (fills the queue): %d", r.StatusCode)
	}
	var e struct{ Error struct{ Code string } }
	r := call(t, "POST", base+"/v1/exports", `{"rows":10,"durationMs":0}`, nil, &e)
	if r.StatusCode != http.StatusServiceUnavailable || e.Error.Code != "QUEUE_FULL" || r.Header.Get("Retry-After") == "" {
		t.Errorf("third create: %d %s Retry-After %q; want 503 QUEUE_FULL with Retry-After", r.StatusCode, e.Error.Code, r.Header.Get("Retry-After"))
	}
}

func TestAnOwnerPastTheActiveCapGets429(t *testing.T) {
	base := startBackend(t, func(h *httpapi.Config, _ *worker.Config) { h.MaxActivePerOwner = 1 })
	call(t, "POST", base+"/v1/exports", `{"rows":10,"durationMs":60000}`, owner("busy"), nil)
	var e struct{ Error struct{ Code string } }
	if r := call(t, "POST", base+"/v1/exports", `{"rows":10,"durationMs":0}`, owner("busy"), &e); r.StatusCode != http.StatusTooManyRequests || e.Error.Code != "TOO_MANY_ACTIVE" || r.Header.Get("Retry-After") == "" {
		t.Errorf("second active export: %d %s; want 429 TOO_MANY_ACTIVE with Retry-After", r.StatusCode, e.Error.Code)
	}
	if r := call(t, "POST", base+"/v1/exports", `{"rows":10,"durationMs":0}`, owner("idle"), nil); r.StatusCode != http.StatusAccepted {
		t.Errorf("another owner: %d, want 202", r.StatusCode)
	}
}

// statsDown is the real store whose counts cannot be read (Redis slow or
// away for that one call).
type statsDown struct{ store.Store }

func (statsDown) Stats(context.Context) (map[job.Status]int, map[string]int, error) {
	return nil, nil, store.RedisError("read stats", context.DeadlineExceeded)
}

func TestWhenTheActiveCountCannotBeReadACreateUnderTheCapGets503AndMakesNoJob(t *testing.T) {
	b := newBackend(t, func(h *httpapi.Config, _ *worker.Config) {
		h.MaxActivePerOwner = 1
		h.Store = statsDown{h.Store}
	})
	var e struct{ Error struct{ Code string } }
	if r := call(t, "POST", b.url+"/v1/exports", `{"rows":10,"durationMs":60000}`, owner("busy"), &e); r.StatusCode != http.StatusServiceUnavailable || e.Error.Code != "STORE_UNAVAILABLE" || r.Header.Get("Retry-After") == "" {
		t.Errorf("create: %d %s Retry-After %q; want 503 STORE_UNAVAILABLE with Retry-After", r.StatusCode, e.Error.Code, r.Header.Get("Retry-After"))
	}
	if jobs, err := b.store.List(t.Context(), "busy"); err != nil || len(jobs) != 0 {
		t.Errorf("%d jobs stored (%v); want none", len(jobs), err)
	}
}

func TestRetentionDeletesFinishedExportsAndTheirFileAnswers410(t *testing.T) {
	b := newBackend(t)
	h := http.Header{"Idempotency-Key": {"k1"}}
	var j job.Job
	call(t, "POST", b.url+"/v1/exports", `{"rows":10,"durationMs":0}`, h, &j)
	done := last(follow(t, b.url+"/v1/exports/"+j.Code+"/events", nil))
	if done.File == nil || done.File.ExpiresAt.Sub(done.UpdatedAt).Round(time.Minute) != time.Hour {
		t.Fatalf("file %+v: want expiresAt one retention period after completion", done.File)
	}
	// The sweeper's clock is injected: an hour and a minute later.
	n, err := b.pool.Sweep(t.Context(), time.Now().Add(61*time.Minute))
	if err != nil || n != 1 {
		t.Fatalf("sweep: %d deleted, %v; want 1", n, err)
	}
	var e struct{ Error struct{ Code string } }
	if r := call(t, "GET", b.url+"/v1/exports/"+j.Code+"/file", "", nil, &e); r.StatusCode != http.StatusGone || e.Error.Code != "GONE" {
		t.Errorf("file after retention: %d %s, want 410 GONE", r.StatusCode, e.Error.Code)
	}
	if r := call(t, "GET", b.url+"/v1/exports/"+j.Code, "", nil, nil); r.StatusCode != http.StatusNotFound {
		t.Errorf("job after retention: %d, want 404", r.StatusCode)
	}
	if r := call(t, "GET", b.url+"/v1/exports/"+j.Code+"/file", "", owner("other"), nil); r.StatusCode != http.StatusNotFound {
		t.Errorf("expired file as another owner: %d, want 404", r.StatusCode)
	}
	var again job.Job
	if r := call(t, "POST", b.url+"/v1/exports", `{"rows":10,"durationMs":0}`, h, &again); r.StatusCode != http.StatusAccepted || again.Code == j.Code {
		t.Errorf("the expired idempotency key: %d %s, want a new export", r.StatusCode, again.Code)
	}
}

func TestTheFileAnswersRangeAndConditionalRequests(t *testing.T) {
	base := startBackend(t)
	var j job.Job
	call(t, "POST", base+"/v1/exports", `{"rows":100,"durationMs":0}`, nil, &j)
	done := last(follow(t, base+"/v1/exports/"+j.Code+"/events", nil))
	url := base + done.File.URL
	tests := []struct {
		name   string
		header http.Header
		status int
		check  func(*http.Response) bool
	}{
		{"the first 10 bytes", http.Header{"Range": {"bytes=0-9"}}, http.StatusPartialContent, func(r *http.Response) bool {
			return r.Header.Get("Content-Range") == "bytes 0-9/"+itoa(done.File.Size) && r.Header.Get("Content-Length") == "10"
		}},
		{"a range past the end", http.Header{"Range": {"bytes=99999999-"}}, http.StatusRequestedRangeNotSatisfiable, nil},
		{"the current ETag", http.Header{"If-None-Match": {`"` + done.File.SHA256 + `"`}}, http.StatusNotModified, nil},
		{"another ETag", http.Header{"If-None-Match": {`"nope"`}}, http.StatusOK, func(r *http.Response) bool { return r.Header.Get("Accept-Ranges") == "bytes" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := call(t, "GET", url, "", tt.header, nil)
			if r.StatusCode != tt.status || (tt.check != nil && !tt.check(r)) {
				t.Errorf("status %d headers %v; want %d", r.StatusCode, r.Header, tt.status)
			}
		})
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func TestAQuietStreamGetsHeartbeatComments(t *testing.T) {
	base := startBackend(t, func(h *httpapi.Config, w *worker.Config) {
		h.Heartbeat = 50 * time.Millisecond
		w.ProgressInterval = time.Hour // no progress events: only heartbeats can arrive
	})
	var j job.Job
	call(t, "POST", base+"/v1/exports", `{"rows":10,"durationMs":60000}`, nil, &j)
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, base+"/v1/exports/"+j.Code+"/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	lines := bufio.NewScanner(resp.Body)
	pings := 0
	for pings < 2 && lines.Scan() {
		if lines.Text() == ": ping" {
			pings++
		}
	}
	if pings < 2 {
		t.Fatalf("stream ended after %d heartbeats: %v", pings, lines.Err())
	}
}

func TestMetricsCountJobsStreamsAndGenerations(t *testing.T) {
	base := startBackend(t)
	var j job.Job
	call(t, "POST", base+"/v1/exports", `{"rows":10,"durationMs":0}`, nil, &j)
	last(follow(t, base+"/v1/exports/"+j.Code+"/events", nil))
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(resp.Body)
	for _, want := range []string{
		`exportstream_backend_jobs{status="COMPLETED"} 1`,
		`exportstream_backend_queue_depth 0`,
		`exportstream_backend_event_streams_opened_total 1`,
		`exportstream_backend_events_sent_total`,
		`exportstream_backend_generation_duration_seconds_count{status="COMPLETED"} 1`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

func TestReadinessTurns503WhenDraining(t *testing.T) {
	b := newBackend(t)
	if r := call(t, "GET", b.url+"/readyz", "", nil, nil); r.StatusCode != http.StatusOK {
		t.Fatalf("readyz: %d", r.StatusCode)
	}
	b.api.CloseStreams()
	var e struct{ Error struct{ Code string } }
	if r := call(t, "GET", b.url+"/readyz", "", nil, &e); r.StatusCode != http.StatusServiceUnavailable || e.Error.Code != "UNAVAILABLE" {
		t.Errorf("readyz while draining: %d %s, want 503 UNAVAILABLE", r.StatusCode, e.Error.Code)
	}
}
