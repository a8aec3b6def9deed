package e2e_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	sse "github.com/tmaxmax/go-sse"

	"github.com/exportstream/exportstream/e2e/stack"
)

// Two BFFs with one session secret in front of two backend replicas on one
// Redis, and a round-robin balancer in front of the BFFs, as browsers meet
// them: consecutive requests of one browser reach different BFFs, and a BFF
// may die under an open stream. The browser reads events with go-sse's
// client, which reconnects and resumes with Last-Event-ID as EventSource does.

type frontStack struct {
	*scaledStack
	bffs     map[string]*stack.Proc // by host:port
	hosts    []string               // the BFFs' host:port, in start order
	frontURL string

	mu     sync.Mutex
	routed []routed
}

// routed is one request as the front balancer passed it on.
type routed struct {
	method, path, lastEventID, bff string
}

func startFrontStack(t *testing.T) *frontStack {
	t.Helper()
	s := startScaledStack(t)
	s.replica(t)
	s.replica(t)
	f := &frontStack{scaledStack: s, bffs: map[string]*stack.Proc{}}
	front := &balancer{observe: func(r *http.Request, target *url.URL) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.routed = append(f.routed, routed{r.Method, r.URL.Path, r.Header.Get("Last-Event-ID"), target.Host})
	}}
	for range 2 {
		// A short retry: the browser's reconnect after a BFF dies comes soon.
		p := s.startBFF(t, "-retry", "200ms")
		front.add(p.URL)
		f.bffs[p.Addr] = p
		f.hosts = append(f.hosts, p.Addr)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: front, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	f.frontURL = "http://" + ln.Addr().String()
	return f
}

// newBrowser is a fresh cookie jar: a session of its own on first create.
func newBrowser() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar}
}

// routes returns what the front balancer passed on so far, filtered.
func (f *frontStack) routes(keep func(routed) bool) []routed {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []routed
	for _, r := range f.routed {
		if keep(r) {
			out = append(out, r)
		}
	}
	return out
}

func (f *frontStack) create(t *testing.T, browser *http.Client, rows, durationMs int) stack.Job {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, f.frontURL+"/api/exports",
		strings.NewReader(fmt.Sprintf(`{"rows":%d,"durationMs":%d}`, rows, durationMs)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Origin", f.frontURL) // the browser's origin is the balancer's
	resp, err := browser.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	var j stack.Job
	if err := json.NewDecoder(resp.Body).Decode(&j); err != nil || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("create through the front: %d %v", resp.StatusCode, err)
	}
	return j
}

// follow reads path's events through the front as EventSource would: after a
// drop it reconnects (through the balancer, so possibly to another BFF) with
// Last-Event-ID. handle returns true to stop. It returns the reconnections.
func (f *frontStack) follow(ctx context.Context, browser *http.Client, path string, handle func(sse.Event) bool) (int, error) {
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.frontURL+path, nil)
	if err != nil {
		return 0, err
	}
	retries := 0
	client := &sse.Client{
		HTTPClient: browser,
		Backoff:    sse.Backoff{InitialInterval: 100 * time.Millisecond, MaxRetries: 50},
		OnRetry:    func(error, time.Duration) { retries++ },
	}
	conn := client.NewConnection(req)
	conn.SubscribeMessages(func(ev sse.Event) {
		// go-sse also hands over a block without data (the `retry:` line);
		// EventSource dispatches nothing for it.
		if ev.Data != "" && handle(ev) {
			stop()
		}
	})
	if err := conn.Connect(); !errors.Is(err, context.Canceled) || ctx.Err() == nil {
		return retries, fmt.Errorf("%s: the stream gave up before its end: %w", path, err)
	}
	return retries, nil
}

// verifyDownload fetches a finished job's file through the front and checks
// it against the SHA-256 recomputed from the code.
func (f *frontStack) verifyDownload(t *testing.T, browser *http.Client, end stack.Job, rows int) {
	t.Helper()
	if end.File == nil {
		t.Fatalf("%s: no file on the terminal event", end.Code)
	}
	got, err := stack.Download(t.Context(), browser, f.frontURL+end.File.URL)
	if err != nil {
		t.Fatalf("%s: %v", end.Code, err)
	}
	if want := stack.ExpectedSHA256(end.Code, rows); got != want || end.File.SHA256 != want {
		t.Errorf("%s: downloaded sha256 %s, announced %s, want %s", end.Code, got, end.File.SHA256, want)
	}
}

// checkJobEvents: every id is the job's seq, seqs strictly increase, and
// exactly one event is terminal, the last, COMPLETED.
func checkJobEvents(t *testing.T, code string, ids []string, jobs []stack.Job) stack.Job {
	t.Helper()
	if len(jobs) == 0 {
		t.Fatalf("%s: no events", code)
	}
	prev, terminal := int64(0), 0
	for i, j := range jobs {
		if ids[i] != strconv.FormatInt(j.Seq, 10) {
			t.Errorf("%s: event id %q carries seq %d", code, ids[i], j.Seq)
		}
		if j.Seq <= prev {
			t.Errorf("%s: seq %d after %d (a duplicate or going back)", code, j.Seq, prev)
		}
		prev = j.Seq
		if j.Status.Terminal() {
			terminal++
		}
	}
	end := jobs[len(jobs)-1]
	if terminal != 1 || end.Status != stack.StatusCompleted {
		t.Fatalf("%s: %d terminal events, last %s; want exactly one, COMPLETED", code, terminal, end.Status)
	}
	return end
}

func TestABFFDiesUnderAStreamAndTheBrowserResumesThroughTheOtherByLastEventID(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			f := startFrontStack(t)
			browser := newBrowser()
			const rows = 3000
			j := f.create(t, browser, rows, 3000)
			path := "/api/exports/" + j.Code + "/events"

			var (
				mu   sync.Mutex
				ids  []string
				jobs []stack.Job
			)
			underway := make(chan struct{})
			var once sync.Once
			type result struct {
				retries int
				err     error
			}
			done := make(chan result, 1)
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			go func() {
				n, err := f.follow(ctx, browser, path, func(ev sse.Event) bool {
					var got stack.Job
					if err := json.Unmarshal([]byte(ev.Data), &got); err != nil {
						t.Errorf("event %q: %v", ev.Data, err)
						return true
					}
					mu.Lock()
					ids, jobs = append(ids, ev.LastEventID), append(jobs, got)
					mu.Unlock()
					if got.Status == stack.StatusInProgress && got.Progress > 0 {
						once.Do(func() { close(underway) })
					}
					return got.Status.Terminal() || got.Status == "ERROR"
				})
				done <- result{n, err}
			}()

			select {
			case <-underway:
			case r := <-done:
				t.Fatalf("the stream ended before the export got under way: %v", r.err)
			case <-time.After(20 * time.Second):
				t.Fatal("the export did not get under way")
			}
			streams := f.routes(func(r routed) bool { return r.path == path })
			if len(streams) != 1 || streams[0].lastEventID != "" {
				t.Fatalf("before the kill: %+v; want one events request, without Last-Event-ID", streams)
			}
			doomed := streams[0].bff
			mu.Lock()
			seenBefore := len(jobs)
			mu.Unlock()
			if err := f.bffs[doomed].Signal(sig); err != nil {
				t.Fatal(err)
			}
			_ = f.bffs[doomed].Wait() // gone: it no longer accepts connections
			killed := time.Now()

			var r result
			select {
			case r = <-done:
			case <-time.After(time.Minute):
				t.Fatal("no terminal event within a minute of the kill")
			}
			if r.err != nil {
				t.Fatal(r.err)
			}
			mu.Lock()
			defer mu.Unlock()
			end := checkJobEvents(t, j.Code, ids, jobs)
			if r.retries < 1 {
				t.Errorf("the browser never reconnected")
			}
			if len(jobs) <= seenBefore {
				t.Errorf("no event after the BFF died")
			}
			// The resume: to the surviving BFF, with the id of an event the
			// browser had, and nothing at or before it came again (above).
			var resumed []routed
			for _, r := range f.routes(func(r routed) bool { return r.path == path })[1:] {
				if r.bff == doomed {
					t.Errorf("a reconnect reached the dead BFF: %+v", r)
				}
				resumed = append(resumed, r)
			}
			if len(resumed) == 0 || resumed[0].lastEventID == "" {
				t.Fatalf("reconnects %+v; want one to the other BFF with Last-Event-ID", resumed)
			}
			had := false
			for _, id := range ids {
				had = had || id == resumed[0].lastEventID
			}
			if !had {
				t.Errorf("resumed with Last-Event-ID %q, not an id the browser received (%v)", resumed[0].lastEventID, ids)
			}
			t.Logf("%s: %d events, %d before the kill; resumed with Last-Event-ID %s on the other BFF; COMPLETED %v after the kill",
				sig, len(jobs), seenBefore, resumed[0].lastEventID, time.Since(killed).Round(10*time.Millisecond))
			f.verifyDownload(t, browser, end, rows)
		})
	}
}

// servedByBoth fails t unless both BFFs served some of what keep selects.
func (f *frontStack) servedByBoth(t *testing.T, what string, keep func(routed) bool) {
	t.Helper()
	count := map[string]int{}
	for _, r := range f.routes(keep) {
		count[r.bff]++
	}
	for _, h := range f.hosts {
		if count[h] == 0 {
			t.Errorf("%s: BFF %s served none of them (%v); requests did not alternate", what, h, count)
		}
	}
}

// The integration flows with every request of the browser going to the next
// BFF: a job is created through one, followed through the other, its file
// downloaded through either; the session is the signed cookie, so both know it.
func TestOneBrowserAlternatingBetweenTwoBFFs(t *testing.T) {
	f := startFrontStack(t)

	t.Run("create, per-job events, download, verify", func(t *testing.T) {
		browser := newBrowser()
		const rows, n = 2000, 4
		var codes []string
		for range n {
			codes = append(codes, f.create(t, browser, rows, 1500).Code)
		}
		type stream struct {
			ids  []string
			jobs []stack.Job
			err  error
		}
		results := make(chan stream, n)
		for _, code := range codes {
			go func() {
				var s stream
				_, s.err = f.follow(t.Context(), browser, "/api/exports/"+code+"/events", func(ev sse.Event) bool {
					var j stack.Job
					if err := json.Unmarshal([]byte(ev.Data), &j); err != nil {
						s.err = fmt.Errorf("%s: event %q: %w", code, ev.Data, err)
						return true
					}
					if j.Code != code {
						s.err = fmt.Errorf("%s: an event of %s on its stream", code, j.Code)
						return true
					}
					s.ids, s.jobs = append(s.ids, ev.LastEventID), append(s.jobs, j)
					return j.Status.Terminal() || j.Status == "ERROR"
				})
				results <- s
			}()
		}
		for range n {
			var s stream
			select {
			case s = <-results:
			case <-time.After(time.Minute):
				t.Fatal("no terminal event within a minute")
			}
			if s.err != nil {
				t.Fatal(s.err)
			}
			end := checkJobEvents(t, s.jobs[0].Code, s.ids, s.jobs)
			f.verifyDownload(t, browser, end, rows)
		}
		// Either BFF lists the session's jobs, whichever created them.
		for range 2 {
			var list struct{ Exports []stack.Job }
			resp, err := browser.Get(f.frontURL + "/api/exports")
			if err != nil {
				t.Fatal(err)
			}
			err = json.NewDecoder(resp.Body).Decode(&list)
			_ = resp.Body.Close()
			if err != nil || len(list.Exports) != n {
				t.Errorf("list: %d exports, %v; want %d", len(list.Exports), err, n)
			}
		}
		f.servedByBoth(t, "creates", func(r routed) bool { return r.method == http.MethodPost })
		f.servedByBoth(t, "event streams", func(r routed) bool { return strings.HasSuffix(r.path, "/events") })
		f.servedByBoth(t, "downloads", func(r routed) bool { return strings.HasSuffix(r.path, "/file") })
		f.servedByBoth(t, "lists", func(r routed) bool { return r.method == http.MethodGet && r.path == "/api/exports" })
	})

	t.Run("multiplexed /api/events", func(t *testing.T) {
		browser := newBrowser()
		const rows, n = 2000, 4
		want := map[string]bool{}
		for range n {
			want[f.create(t, browser, rows, 1500).Code] = true
		}
		// One stream for the tab, on whichever BFF its turn gives; it follows
		// the jobs created through the other one too.
		latest := map[string]stack.Job{}
		terminal := map[string]int{}
		_, err := f.follow(t.Context(), browser, "/api/events", func(ev sse.Event) bool {
			var j stack.Job
			if err := json.Unmarshal([]byte(ev.Data), &j); err != nil || !want[j.Code] {
				t.Errorf("event %q: %v; not one of this session's jobs", ev.Data, err)
				return true
			}
			if ev.LastEventID != j.Code+":"+strconv.FormatInt(j.Seq, 10) {
				t.Errorf("id %q for %s seq %d; want <code>:<seq>", ev.LastEventID, j.Code, j.Seq)
			}
			if prev, ok := latest[j.Code]; ok && j.Seq <= prev.Seq {
				t.Errorf("%s: seq %d after %d on one connection", j.Code, j.Seq, prev.Seq)
			}
			latest[j.Code] = j
			if j.Status.Terminal() {
				terminal[j.Code]++
			}
			return len(terminal) == n || j.Status == "ERROR"
		})
		if err != nil {
			t.Fatal(err)
		}
		for code := range want {
			if terminal[code] != 1 || latest[code].Status != stack.StatusCompleted {
				t.Fatalf("%s: %d terminal events, last %s; want one, COMPLETED", code, terminal[code], latest[code].Status)
			}
			f.verifyDownload(t, browser, latest[code], rows)
		}
		f.servedByBoth(t, "creates", func(r routed) bool { return r.method == http.MethodPost })
	})
}
