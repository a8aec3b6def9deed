package httpapi_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	sse "github.com/tmaxmax/go-sse"

	"github.com/exportstream/exportstream/bff/internal/backend"
	"github.com/exportstream/exportstream/bff/internal/httpapi"
	"github.com/exportstream/exportstream/bff/internal/relay"
	"github.com/exportstream/exportstream/bff/internal/session"
	"github.com/exportstream/exportstream/internal/testenv"
)

// backendBin is the real backend binary, built once for the package.
var backendBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "bff-test-")
	if err != nil {
		panic(err)
	}
	backendBin = filepath.Join(dir, "backend")
	build := exec.Command("go", "build", "-o", backendBin, "./cmd/backend")
	build.Dir = "../../../backend"
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build backend:", err)
		os.Exit(1)
	}
	// Tests talk like one browser: a cookie jar keeps the BFF's session.
	jar, _ := cookiejar.New(nil)
	http.DefaultClient.Jar = jar
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

type backendProc struct {
	url string
	cmd *exec.Cmd
}

// startBackend runs the real backend binary on a free loopback port and
// returns once it is listening (it logs its address when it is).
func startBackend(t *testing.T, args ...string) *backendProc {
	t.Helper()
	cmd := exec.Command(backendBin, append([]string{"-addr", "127.0.0.1:0", "-data-dir", t.TempDir(), "-scenarios", "on"}, args...)...)
	cmd.Env = append(os.Environ(), "LOG_LEVEL=info")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	lines := bufio.NewScanner(out)
	for lines.Scan() {
		var line struct {
			Msg  string `json:"msg"`
			Addr string `json:"addr"`
		}
		if json.Unmarshal(lines.Bytes(), &line) == nil && line.Msg == "backend listening" {
			go func() { _, _ = io.Copy(io.Discard, out) }()
			return &backendProc{url: "http://" + line.Addr, cmd: cmd}
		}
	}
	t.Fatalf("backend exited before listening: %v", lines.Err())
	return nil
}

// upstream is what the backend counted of the BFF's upstream: its
// per-job event streams, multiplexed streams and subscriptions started.
type upstream struct{ perJob, mux, subscribed int }

func (b *backendProc) upstream(t *testing.T) upstream {
	t.Helper()
	return upstream{
		b.counter(t, "exportstream_backend_event_streams_opened_total"),
		b.counter(t, "exportstream_backend_mux_streams_opened_total"),
		b.counter(t, "exportstream_backend_mux_subscribed_total"),
	}
}

// counter reads one of the backend's own counters.
func (b *backendProc) counter(t *testing.T, name string) int {
	t.Helper()
	n, err := strconv.Atoi(metric(t, b.url, name))
	if err != nil {
		t.Fatalf("backend metric %s: %v", name, err)
	}
	return n
}

// startBFF runs the real BFF handler on a loopback socket in front of backendURL.
func startBFF(t *testing.T, backendURL string, giveUp time.Duration) string {
	t.Helper()
	return startBFFWithToken(t, backendURL, giveUp, "")
}

func startBFFWithToken(t *testing.T, backendURL string, giveUp time.Duration, token string) string {
	t.Helper()
	return startBFFWith(t, backendURL, token, func(h *relay.Config, _ *httpapi.Config) { h.GiveUp = giveUp })
}

// testSecret is shared by every BFF of a test, so the jar's cookie is valid
// on each (cookies do not tell ports apart).
var testSecret = []byte(strings.Repeat("k", 32))

func startBFFWith(t *testing.T, backendURL, token string, opts ...func(*relay.Config, *httpapi.Config)) string {
	t.Helper()
	be, err := backend.New(backendURL, token)
	if err != nil {
		t.Fatal(err)
	}
	return startBFFOn(t, be, opts...)
}

// sessionOf is the session id in the jar's cookie for bff: the owner the
// BFF sends to the backend.
func sessionOf(t *testing.T, bff string) string {
	t.Helper()
	u, _ := url.Parse(bff)
	for _, c := range http.DefaultClient.Jar.Cookies(u) {
		if c.Name == session.CookieName {
			id, _, _ := strings.Cut(c.Value, ".")
			return id
		}
	}
	t.Fatal("no session cookie")
	return ""
}

type job struct {
	Code      string    `json:"code"`
	Status    string    `json:"status"`
	Progress  int       `json:"progress"`
	Seq       int64     `json:"seq"`
	UpdatedAt time.Time `json:"updatedAt"`
	File      *struct {
		Name, SHA256, URL string
	} `json:"file"`
	Error *struct{ Code, Message string } `json:"error"`
}

func create(t *testing.T, bff, body string) job {
	t.Helper()
	resp, err := http.Post(bff+"/api/exports", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	var j job
	if err := json.NewDecoder(resp.Body).Decode(&j); err != nil || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("create: status %d, err %v", resp.StatusCode, err)
	}
	if loc := resp.Header.Get("Location"); loc != "/api/exports/"+j.Code {
		t.Errorf("Location = %q, want it under /api", loc)
	}
	return j
}

type event struct {
	id   string
	data string
	job  job
}

// stream is one browser-like event stream reader.
type stream struct {
	resp   *http.Response
	events chan event
	done   chan error
}

func openStream(t *testing.T, url string, header http.Header) *stream {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	s := &stream{resp: resp, events: make(chan event, 1024), done: make(chan error, 1)}
	go func() {
		defer cancel()
		defer func() { _ = resp.Body.Close() }()
		defer close(s.events)
		for ev, err := range sse.Read(resp.Body, nil) {
			if err != nil {
				s.done <- err
				return
			}
			var j job
			if err := json.Unmarshal([]byte(ev.Data), &j); err != nil {
				s.done <- fmt.Errorf("event data %q: %w", ev.Data, err)
				return
			}
			s.events <- event{ev.LastEventID, ev.Data, j}
		}
		s.done <- nil
	}()
	return s
}

func (s *stream) next(t *testing.T) event {
	t.Helper()
	ev, ok := <-s.events
	if !ok {
		t.Fatalf("stream ended early: %v", <-s.done)
	}
	return ev
}

// rest reads the stream to its end and checks that the server ended it.
func (s *stream) rest(t *testing.T) []event {
	t.Helper()
	var evs []event
	for ev := range s.events {
		evs = append(evs, ev)
	}
	if err := <-s.done; err != nil {
		t.Fatalf("stream: %v", err)
	}
	return evs
}

func TestThreeBrowsersOnOneExportShareOneSubscriptionAndSeeTheSameEvents(t *testing.T) {
	be := startBackend(t)
	bff := startBFF(t, be.url, 5*time.Second)
	j := create(t, bff, `{"rows":4000,"durationMs":1500}`)

	url := bff + "/api/exports/" + j.Code + "/events"
	var streams []*stream
	var firsts []event
	for range 3 {
		s := openStream(t, url, nil)
		streams = append(streams, s)
		firsts = append(firsts, s.next(t)) // joined: it got the snapshot at once
	}
	all := make([][]event, 3)
	var wg sync.WaitGroup
	for i, s := range streams {
		wg.Go(func() { all[i] = append([]event{firsts[i]}, s.rest(t)...) })
	}
	wg.Wait()

	// One stream for everything, one subscription for the three.
	if u := be.upstream(t); u != (upstream{0, 1, 1}) {
		t.Fatalf("the backend served %+v for 3 browsers on one export, want one multiplexed stream with one subscription", u)
	}
	joinedAll := max(firsts[0].job.Seq, firsts[1].job.Seq, firsts[2].job.Seq)
	var reference []string
	for i, evs := range all {
		for k, ev := range evs {
			if ev.id != strconv.FormatInt(ev.job.Seq, 10) {
				t.Errorf("browser %d: id %q is not the job's seq %d", i, ev.id, ev.job.Seq)
			}
			if k > 0 && ev.job.Seq <= evs[k-1].job.Seq {
				t.Errorf("browser %d: seq %d after %d", i, ev.job.Seq, evs[k-1].job.Seq)
			}
		}
		last := evs[len(evs)-1].job
		if last.Status != "COMPLETED" {
			t.Fatalf("browser %d: last status %s, want COMPLETED", i, last.Status)
		}
		var since []string // id and data of each event once all had joined
		for _, ev := range evs {
			if ev.job.Seq >= joinedAll {
				since = append(since, ev.id+" "+ev.data)
			}
		}
		if reference == nil {
			reference = since
			continue
		}
		if !slices.Equal(since, reference) {
			t.Errorf("browser %d saw different events than browser 0 once all had joined:\n%q\n%q", i, since, reference)
		}
	}

	// The relay changes nothing: the final event is the backend's, byte for byte.
	direct := openStream(t, be.url+"/v1/exports/"+j.Code+"/events", http.Header{"X-Forwarded-Prefix": {"/api"}, "X-Export-Owner": {sessionOf(t, bff)}}).rest(t)
	lastRelayed := all[0][len(all[0])-1].data
	if got, want := lastRelayed, direct[len(direct)-1].data; got != want {
		t.Errorf("relayed data differs from the backend's:\n got %s\nwant %s", got, want)
	}
}

func TestADownloadThroughTheBFFMatchesTheAnnouncedSHA256(t *testing.T) {
	be := startBackend(t)
	bff := startBFF(t, be.url, 5*time.Second)
	j := create(t, bff, `{"rows":5000,"durationMs":100,"filename":"sales report.csv"}`)
	evs := openStream(t, bff+"/api/exports/"+j.Code+"/events", nil).rest(t)
	f := evs[len(evs)-1].job.File
	if f == nil || f.URL != "/api/exports/"+j.Code+"/file" {
		t.Fatalf("file = %+v, want a url under /api", f)
	}
	resp, err := http.Get(bff + f.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(resp.Body)
	sum := sha256.Sum256(body)
	if resp.StatusCode != http.StatusOK || hex.EncodeToString(sum[:]) != f.SHA256 {
		t.Fatalf("download: status %d, sha256 %x, want %s", resp.StatusCode, sum, f.SHA256)
	}
	if cd := resp.Header.Get("Content-Disposition"); !strings.Contains(cd, "attachment") || !strings.Contains(cd, "filename*=UTF-8''sales%20report.csv") {
		t.Errorf("Content-Disposition = %q", cd)
	}
	if resp.Header.Get("Content-Length") != strconv.Itoa(len(body)) {
		t.Errorf("Content-Length = %q, body %d bytes", resp.Header.Get("Content-Length"), len(body))
	}

	// Range passes through: the second half only.
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, bff+f.URL, nil)
	req.Header.Set("Range", fmt.Sprintf("bytes=%d-", len(body)/2))
	part, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = part.Body.Close() }()
	tail, _ := io.ReadAll(part.Body)
	if part.StatusCode != http.StatusPartialContent || string(tail) != string(body[len(body)/2:]) {
		t.Errorf("range: status %d, %d bytes", part.StatusCode, len(tail))
	}
}

func TestWhenTheBackendDiesSubscribersGetERRORAndTheirStreamsEnd(t *testing.T) {
	be := startBackend(t)
	bff := startBFF(t, be.url, 300*time.Millisecond)
	j := create(t, bff, `{"rows":1000,"durationMs":60000}`)
	url := bff + "/api/exports/" + j.Code + "/events"
	a, b := openStream(t, url, nil), openStream(t, url, nil)
	a.next(t)
	b.next(t)

	if err := be.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string]*stream{"a": a, "b": b} {
		evs := s.rest(t)
		if len(evs) == 0 {
			t.Fatalf("browser %s: stream ended without ERROR", name)
		}
		last := evs[len(evs)-1]
		if last.job.Status != "ERROR" || last.job.Code != j.Code || last.job.Error == nil || last.job.Error.Code != "UPSTREAM_UNAVAILABLE" {
			t.Errorf("browser %s: last event %s, want ERROR UPSTREAM_UNAVAILABLE for %s", name, last.data, j.Code)
		}
	}
}

func TestAResumeAfterTheEndGets204(t *testing.T) {
	be := startBackend(t)
	bff := startBFF(t, be.url, 5*time.Second)
	j := create(t, bff, `{"rows":10,"durationMs":0}`)
	url := bff + "/api/exports/" + j.Code + "/events"
	evs := openStream(t, url, nil).rest(t)
	last := evs[len(evs)-1]

	resumed := openStream(t, url, http.Header{"Last-Event-ID": {last.id}})
	if resumed.resp.StatusCode != http.StatusNoContent {
		t.Errorf("resume at the final id: status %d, want 204; got %v", resumed.resp.StatusCode, resumed.rest(t))
	}
	prev, _ := strconv.ParseInt(last.id, 10, 64)
	again := openStream(t, url, http.Header{"Last-Event-ID": {strconv.FormatInt(prev-1, 10)}}).rest(t)
	if len(again) != 1 || again[0].id != last.id {
		t.Errorf("resume one before the end: got %d events, want only id %s", len(again), last.id)
	}
}

func TestBadRequestsToTheBFFGetAClearJSONError(t *testing.T) {
	be := startBackend(t)
	bff := startBFF(t, be.url, 5*time.Second)
	unknown := "0b8f2f5e-8a57-4c1b-9f6e-2d0c7f4b9a10"
	tests := []struct {
		name, method, path, body string
		status                   int
		code                     string
	}{
		{"a code that is not a UUID", "GET", "/api/exports/nope", "", 400, "INVALID_CODE"},
		{"events of a code that is not a UUID", "GET", "/api/exports/nope/events", "", 400, "INVALID_CODE"},
		{"a file of a code that is not a UUID", "GET", "/api/exports/not-a-uuid/file", "", 400, "INVALID_CODE"},
		{"an unknown code", "GET", "/api/exports/" + unknown, "", 404, "NOT_FOUND"},
		{"events of an unknown code", "GET", "/api/exports/" + unknown + "/events", "", 404, "NOT_FOUND"},
		{"the file of an unknown code", "GET", "/api/exports/" + unknown + "/file", "", 404, "NOT_FOUND"},
		{"a body that is not JSON (from the backend)", "POST", "/api/exports", "nope", 400, "INVALID_JSON"},
		{"an out-of-range request (from the backend)", "POST", "/api/exports", `{"rows":0,"durationMs":1}`, 422, "VALIDATION_FAILED"},
		{"a body over 64 KiB", "POST", "/api/exports", `{"filename":"` + strings.Repeat("a", 70<<10) + `"}`, 413, "BODY_TOO_LARGE"},
		{"an almost-UUID code", "GET", "/api/exports/" + unknown[:35], "", 400, "INVALID_CODE"},
		{"a UUID in braces", "GET", "/api/exports/{" + unknown + "}/events", "", 400, "INVALID_CODE"},
		{"the file of an almost-UUID", "GET", "/api/exports/" + unknown + "0/file", "", 400, "INVALID_CODE"},
		{"a DELETE of a code that is not a UUID", "DELETE", "/api/exports/nope", "", 400, "INVALID_CODE"},
		{"a DELETE of an unknown code", "DELETE", "/api/exports/" + unknown, "", 404, "NOT_FOUND"},
		{"an unknown field (from the backend)", "POST", "/api/exports", `{"rows":1,"durationMs":0,"colour":"red"}`, 400, "INVALID_JSON"},
		{"failAt out of range (from the backend)", "POST", "/api/exports", `{"rows":1,"durationMs":0,"failAt":100}`, 422, "VALIDATION_FAILED"},
		{"rows as a string (from the backend)", "POST", "/api/exports", `{"rows":"1","durationMs":0}`, 422, "VALIDATION_FAILED"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequestWithContext(t.Context(), tt.method, bff+tt.path, strings.NewReader(tt.body))
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = resp.Body.Close() }()
			var body struct {
				Error struct{ Code, Message string } `json:"error"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
				t.Fatalf("error body is not JSON: %v", err)
			}
			if resp.StatusCode != tt.status || body.Error.Code != tt.code || body.Error.Message == "" {
				t.Errorf("got %d %+v, want %d %s", resp.StatusCode, body.Error, tt.status, tt.code)
			}
		})
	}
}

func TestTheBFFAnswers502WhenTheBackendIsDown(t *testing.T) {
	be := startBackend(t)
	bff := startBFF(t, be.url, 5*time.Second)
	_ = be.cmd.Process.Kill()
	_ = be.cmd.Wait()
	resp, err := http.Post(bff+"/api/exports", "application/json", strings.NewReader(`{"rows":1,"durationMs":0}`))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusBadGateway || resp.Header.Get("Retry-After") == "" {
		t.Errorf("status %d, Retry-After %q; want 502 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
}

func TestCancellingThroughTheBFFEndsEveryBrowsersStreamCancelled(t *testing.T) {
	be := startBackend(t)
	bff := startBFF(t, be.url, 5*time.Second)
	j := create(t, bff, `{"rows":1000,"durationMs":60000}`)
	s := openStream(t, bff+"/api/exports/"+j.Code+"/events", nil)
	s.next(t)

	req, _ := http.NewRequestWithContext(t.Context(), http.MethodDelete, bff+"/api/exports/"+j.Code, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("DELETE: %d, want 200", resp.StatusCode)
	}
	evs := s.rest(t)
	if len(evs) == 0 || evs[len(evs)-1].job.Status != "CANCELLED" {
		t.Fatalf("stream after cancel: %v, want it to end CANCELLED", evs)
	}

	list, err := http.Get(bff + "/api/exports")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = list.Body.Close() }()
	var body struct{ Exports []job }
	if err := json.NewDecoder(list.Body).Decode(&body); err != nil || len(body.Exports) != 1 || body.Exports[0].Status != "CANCELLED" {
		t.Errorf("list: %+v %v, want the one cancelled export", body, err)
	}
}

func TestTheBFFAuthenticatesToTheBackendWithTheServiceToken(t *testing.T) {
	testenv.Slow(t)
	be := startBackend(t, "-service-token", "s3cret")
	good := startBFFWithToken(t, be.url, 5*time.Second, "s3cret")
	j := create(t, good, `{"rows":10,"durationMs":0}`)
	if evs := openStream(t, good+"/api/exports/"+j.Code+"/events", nil).rest(t); evs[len(evs)-1].job.Status != "COMPLETED" {
		t.Errorf("events with the token: ended %s", evs[len(evs)-1].job.Status)
	}

	bad := startBFFWithToken(t, be.url, 5*time.Second, "wrong")
	resp, err := http.Post(bad+"/api/exports", "application/json", strings.NewReader(`{"rows":10,"durationMs":0}`))
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway {
		t.Errorf("a BFF with the wrong token: %d, want 502 (never the backend's 401)", resp.StatusCode)
	}
	evs := openStream(t, bad+"/api/exports/"+j.Code+"/events", nil).rest(t)
	if len(evs) != 1 || evs[0].job.Status != "ERROR" {
		t.Errorf("events through a BFF with the wrong token: %v, want one ERROR at once", evs)
	}
}
