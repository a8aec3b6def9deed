package main_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	sse "github.com/tmaxmax/go-sse"

	"github.com/exportstream/exportstream/backend/internal/job"
	"github.com/exportstream/exportstream/backend/internal/testenv"
)

// The full size for a backend crash: 100 exports generating at once,
// watched by 1,000 subscribers through the real BFF, the backend killed with
// SIGKILL and restarted on the same address and data directory within 2 s.
//
// 100 sessions (browsers) start one export each and watch it with ten
// streams: nine on /api/exports/{code}/events and one on /api/events, the
// tab's multiplexed stream. Every stream is its own TCP connection.
const (
	killJobs       = 100
	killPerJob     = 9 // per-job streams per export
	killMultiplex  = 1 // /api/events streams per session
	killRows       = 2000
	killDurationMs = 8000
)

// killSubscriber is one browser stream's record.
type killSubscriber struct {
	code      string
	multiplex bool

	ids        []string
	jobs       []job.Job
	received   []time.Time
	reconnects int
	err        error
}

func TestKill9OfTheBackendUnder100JobsAnd1000SubscribersLosesNothing(t *testing.T) {
	needFileDescriptors(t, 4096) // 1,000 streams: one socket each in this process and in the BFF
	dir := t.TempDir()
	backendArgs := func(addr string) []string {
		return []string{"-addr", addr, "-data-dir", dir, "-workers", strconv.Itoa(killJobs), "-progress-interval", "250ms"}
	}
	backend, backendURL := startProcess(t, binary, backendArgs("127.0.0.1:0")...)
	_, bffURL := startProcess(t, buildBFF(t), "-addr", "127.0.0.1:0", "-backend-url", backendURL,
		"-session-secret", strings.Repeat("s", 32))

	transport := &http.Transport{MaxIdleConnsPerHost: 16}
	t.Cleanup(transport.CloseIdleConnections)
	browsers := make([]*http.Client, killJobs)
	codes := make([]string, killJobs)
	for i := range browsers {
		jar, _ := cookiejar.New(nil)
		browsers[i] = &http.Client{Jar: jar, Transport: transport}
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, bffURL+"/api/exports",
			strings.NewReader(fmt.Sprintf(`{"rows":%d,"durationMs":%d}`, killRows, killDurationMs)))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Origin", bffURL)
		resp, err := browsers[i].Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var j job.Job
		err = json.NewDecoder(resp.Body).Decode(&j)
		_ = resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusAccepted {
			t.Fatalf("create %d through the BFF: %d %v", i, resp.StatusCode, err)
		}
		codes[i] = j.Code
	}

	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Second)
	defer cancel()
	var subs []*killSubscriber
	progressed := make(chan struct{}, killJobs*(killPerJob+killMultiplex))
	var wg sync.WaitGroup
	for i, code := range codes {
		for k := range killPerJob + killMultiplex {
			s := &killSubscriber{code: code, multiplex: k >= killPerJob}
			subs = append(subs, s)
			wg.Go(func() { s.follow(ctx, browsers[i], bffURL, progressed) })
		}
	}
	t.Logf("%d exports, %d subscribers", len(codes), len(subs))
	for range subs {
		select {
		case <-progressed:
		case <-ctx.Done():
			t.Fatal("not every subscriber saw its export under way")
		}
	}
	// Every export is generating: the backend says so, just before the kill.
	if n := backendJobs(t, backendURL, "IN_PROGRESS"); n != killJobs {
		t.Fatalf("%v exports IN_PROGRESS before the kill, want %d (the exports are too short for this machine?)", n, killJobs)
	}

	killed := time.Now()
	_ = backend.Process.Kill() // SIGKILL: no clean stream end, no checkpoint handed back
	_ = backend.Wait()
	_, restartedURL := startProcess(t, binary, backendArgs(strings.TrimPrefix(backendURL, "http://"))...)
	restartedIn := time.Since(killed)
	if restartedURL != backendURL {
		t.Fatalf("restarted on %s, want %s", restartedURL, backendURL)
	}
	if restartedIn > 2*time.Second {
		t.Errorf("the backend took %v to restart, want within 2 s", restartedIn)
	}

	waited := make(chan struct{})
	go func() { wg.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(45 * time.Second):
		cancel()
		<-waited
		t.Fatal("not every subscriber got a terminal event within 45 s of the kill")
	}
	allDone := time.Since(killed)

	// Each subscriber: ids carry the seq, seqs strictly increase, exactly one
	// terminal event, the last, COMPLETED, received after the restart, and
	// the same terminal event as every other subscriber of its export.
	ends := map[string]job.Job{}
	events, reconnects := 0, 0
	var resumedIn time.Duration // the longest wait for a first event after the kill
	for n, s := range subs {
		what := fmt.Sprintf("subscriber %d (%s, multiplexed %v)", n, s.code, s.multiplex)
		if s.err != nil {
			t.Fatalf("%s: %v", what, s.err)
		}
		events += len(s.jobs)
		reconnects += s.reconnects
		prev, terminal := int64(0), 0
		first := time.Duration(-1)
		for i, j := range s.jobs {
			want := strconv.FormatInt(j.Seq, 10)
			if s.multiplex {
				want = j.Code + ":" + want
			}
			if s.ids[i] != want || j.Code != s.code {
				t.Fatalf("%s: event id %q for %s seq %d", what, s.ids[i], j.Code, j.Seq)
			}
			if j.Seq <= prev {
				t.Fatalf("%s: seq %d after %d (a duplicate or going back)", what, j.Seq, prev)
			}
			prev = j.Seq
			if j.Status.Terminal() {
				terminal++
			}
			if first < 0 && s.received[i].After(killed) {
				first = s.received[i].Sub(killed)
			}
		}
		end := s.jobs[len(s.jobs)-1]
		if terminal != 1 || end.Status != job.StatusCompleted {
			t.Fatalf("%s: %d terminal events, last %s %+v; want exactly one, COMPLETED", what, terminal, end.Status, end.Error)
		}
		if first < 0 {
			t.Fatalf("%s: no event after the kill; the export had ended before it", what)
		}
		resumedIn = max(resumedIn, first)
		if other, ok := ends[s.code]; ok && (other.Seq != end.Seq || other.File == nil || end.File == nil || other.File.SHA256 != end.File.SHA256) {
			t.Fatalf("%s: terminal event seq %d, another subscriber's %d", what, end.Seq, other.Seq)
		}
		ends[s.code] = end
	}
	// A backend restart within the BFF's give-up window is invisible to
	// browsers: their streams stay open while the relay resumes upstream.
	if reconnects != 0 {
		t.Errorf("%d browser streams were dropped and reconnected; the BFF should have held them open", reconnects)
	}

	// No export stuck, and every file verifies.
	for _, status := range []string{"PENDING", "IN_PROGRESS", "FAILED", "CANCELLED"} {
		if n := backendJobs(t, backendURL, status); n != 0 {
			t.Errorf("%v exports %s after the run, want 0", n, status)
		}
	}
	if n := backendJobs(t, backendURL, "COMPLETED"); n != killJobs {
		t.Errorf("%v exports COMPLETED, want %d", n, killJobs)
	}
	want := expectedSHA256Of(codes, killRows)
	for i, code := range codes {
		end := ends[code]
		resp, err := browsers[i].Get(bffURL + end.File.URL)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: download %d %v", code, resp.StatusCode, err)
		}
		sum := sha256.Sum256(body)
		if got := hex.EncodeToString(sum[:]); got != want[code] || end.File.SHA256 != want[code] {
			t.Errorf("%s: downloaded sha256 %s, announced %s, want %s", code, got, end.File.SHA256, want[code])
		}
	}
	t.Logf("%d exports × %d subscribers: %d events checked, %d terminal, lost 0, %d reconnects; backend restarted %v after the kill, first event after it within %v for every subscriber, all terminal %v after the kill",
		killJobs, len(subs)/killJobs, events, len(subs), reconnects,
		restartedIn.Round(time.Millisecond), resumedIn.Round(time.Millisecond), allDone.Round(time.Millisecond))
}

// follow reads s's stream through the BFF as EventSource would, resuming with
// Last-Event-ID if it drops, until its export's terminal event.
func (s *killSubscriber) follow(ctx context.Context, browser *http.Client, bffURL string, progressed chan<- struct{}) {
	path := "/api/exports/" + s.code + "/events"
	if s.multiplex {
		path = "/api/events"
	}
	signalled := false
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			s.reconnects++
			select { // a browser's reconnection delay
			case <-ctx.Done():
				s.err = fmt.Errorf("no terminal event before the deadline (%d events)", len(s.jobs))
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, bffURL+path, nil)
		if n := len(s.ids); n > 0 {
			req.Header.Set("Last-Event-ID", s.ids[n-1])
		}
		resp, err := browser.Do(req)
		if err != nil {
			continue
		}
		if resp.StatusCode != http.StatusOK {
			_ = resp.Body.Close()
			s.err = fmt.Errorf("GET %s: %d", path, resp.StatusCode)
			return
		}
		for ev, err := range sse.Read(resp.Body, nil) {
			if err != nil {
				break
			}
			var j job.Job
			if err := json.Unmarshal([]byte(ev.Data), &j); err != nil {
				_ = resp.Body.Close()
				s.err = fmt.Errorf("event %q: %w", ev.Data, err)
				return
			}
			if j.Status == "ERROR" {
				_ = resp.Body.Close()
				s.err = fmt.Errorf("ERROR event: %s", ev.Data)
				return
			}
			s.ids, s.jobs, s.received = append(s.ids, ev.LastEventID), append(s.jobs, j), append(s.received, time.Now())
			if !signalled && j.Status == job.StatusInProgress && j.Progress > 0 {
				signalled = true
				progressed <- struct{}{}
			}
			if j.Status.Terminal() {
				_ = resp.Body.Close()
				return
			}
		}
		_ = resp.Body.Close()
	}
}

// needFileDescriptors skips t loudly (fails it under CI=true) when the hard
// limit on open files is below n. Go raises a process's soft limit to the
// hard one by itself, the binaries started here too.
func needFileDescriptors(t *testing.T, n uint64) {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Max >= n {
		return
	}
	testenv.Missing(t, "an open-files limit of %d (ulimit -Hn is %d); the 1,000-subscriber test NOT run", n, lim.Max)
}

// backendJobs reads how many jobs the backend holds in status, from /metrics.
func backendJobs(t *testing.T, backendURL, status string) float64 {
	t.Helper()
	resp, err := http.Get(backendURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^exportstream_backend_jobs\{status="` + status + `"\} (\S+)$`).FindSubmatch(body)
	if m == nil {
		return 0 // a status no job has is not reported
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	return v
}

// expectedSHA256Of recomputes the files' checksums, concurrently.
func expectedSHA256Of(codes []string, rows int) map[string]string {
	var mu sync.Mutex
	out := make(map[string]string, len(codes))
	var wg sync.WaitGroup
	for _, code := range codes {
		wg.Go(func() {
			sum := expectedSHA256(code, rows)
			mu.Lock()
			defer mu.Unlock()
			out[code] = sum
		})
	}
	wg.Wait()
	return out
}
