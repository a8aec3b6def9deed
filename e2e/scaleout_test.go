package e2e_test

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	sse "github.com/tmaxmax/go-sse"

	"github.com/exportstream/exportstream/e2e/stack"
	"github.com/exportstream/exportstream/internal/redistest"
)

// The scaled-out stack, real processes: redis-server, backend replicas on
// it sharing one files directory, a round-robin balancer in front of them
// and the real BFF in front of that, as a browser sees it.

// balancer spreads requests over the backends round-robin and skips one
// that refuses connections, as a load balancer with health checks would.
// observe, when set, sees each request and the backend chosen for it.
type balancer struct {
	mu       sync.Mutex
	backends []*url.URL
	next     int
	observe  func(r *http.Request, target *url.URL)
}

func (b *balancer) add(raw string) {
	u, _ := url.Parse(raw)
	b.mu.Lock()
	defer b.mu.Unlock()
	b.backends = append(b.backends, u)
}

func (b *balancer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.mu.Lock()
	order := make([]*url.URL, 0, len(b.backends))
	for i := range b.backends {
		order = append(order, b.backends[(b.next+i)%len(b.backends)])
	}
	b.next++
	b.mu.Unlock()
	for _, u := range order {
		if c, err := net.DialTimeout("tcp", u.Host, time.Second); err == nil {
			_ = c.Close()
			if b.observe != nil {
				b.observe(r, u)
			}
			p := httputil.NewSingleHostReverseProxy(u)
			p.FlushInterval = -1 // event streams pass at once
			p.ErrorHandler = func(w http.ResponseWriter, _ *http.Request, _ error) { w.WriteHeader(http.StatusBadGateway) }
			p.ServeHTTP(w, r)
			return
		}
	}
	w.WriteHeader(http.StatusBadGateway)
}

type scaledStack struct {
	redis    *redistest.Server
	filesDir string
	lb       *balancer
	lbURL    string
	bffURL   string
	browser  *http.Client
}

func startScaledStack(t *testing.T) *scaledStack {
	t.Helper()
	s := &scaledStack{redis: redistest.Start(t), filesDir: t.TempDir(), lb: &balancer{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: s.lb, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	s.lbURL = "http://" + ln.Addr().String()
	s.bffURL = s.startBFF(t).URL
	jar, _ := cookiejar.New(nil)
	s.browser = &http.Client{Jar: jar}
	return s
}

// startBFF starts one more BFF in front of the backends' balancer; every BFF
// of a stack has the same session secret, so any serves any browser.
func (s *scaledStack) startBFF(t *testing.T, extra ...string) *stack.Proc {
	t.Helper()
	return stack.BFF(t, s.lbURL, append([]string{"-upstream-giveup", "60s", "-create-burst", "100"}, extra...)...)
}

// replica starts one more backend on the stack's Redis and files directory.
func (s *scaledStack) replica(t *testing.T) *stack.Proc {
	t.Helper()
	p := stack.Backend(t, "-data-dir", s.filesDir,
		"-redis-url", s.redis.URL()+"?dial_timeout=1s&max_retries=1", "-claim-idle", "1500ms", "-workers", "8")
	s.lb.add(p.URL)
	return p
}

func (s *scaledStack) post(t *testing.T, body string) *http.Response {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, s.bffURL+"/api/exports", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Origin", s.bffURL)
	resp, err := s.browser.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// subscribe reads code's events through the BFF as a browser would,
// reconnecting with Last-Event-ID when the stream drops before the end.
// It returns every event's seq and the jobs in order.
func (s *scaledStack) subscribe(t *testing.T, code string, progressed chan<- string) <-chan []stack.Job {
	done := make(chan []stack.Job, 1)
	go func() {
		var seen []stack.Job
		defer func() { done <- seen }()
		lastID, signalled := "", false
		deadline := time.Now().Add(time.Minute)
		for time.Now().Before(deadline) {
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, s.bffURL+"/api/exports/"+code+"/events", nil)
			if lastID != "" {
				req.Header.Set("Last-Event-ID", lastID)
			}
			resp, err := s.browser.Do(req)
			if err != nil {
				time.Sleep(200 * time.Millisecond)
				continue
			}
			if resp.StatusCode == http.StatusNoContent {
				_ = resp.Body.Close()
				return
			}
			for ev, err := range sse.Read(resp.Body, nil) {
				if err != nil {
					break
				}
				var j stack.Job
				if json.Unmarshal([]byte(ev.Data), &j) != nil {
					continue
				}
				if ev.LastEventID != strconv.FormatInt(j.Seq, 10) {
					t.Errorf("%s: event id %q carries seq %d", code, ev.LastEventID, j.Seq)
				}
				lastID = ev.LastEventID
				seen = append(seen, j)
				if !signalled && j.Status == stack.StatusInProgress && j.Progress > 0 {
					signalled = true
					progressed <- code
				}
				if j.Status.Terminal() || j.Status == "ERROR" {
					_ = resp.Body.Close()
					return
				}
			}
			_ = resp.Body.Close()
			time.Sleep(100 * time.Millisecond)
		}
		t.Errorf("%s: no terminal event within a minute", code)
	}()
	return done
}

func TestAKilledReplicasJobsFinishOnAnotherWithOneTerminalEventEach(t *testing.T) {
	s := startScaledStack(t)
	doomed := s.replica(t) // alone at first: its workers take every job
	const rows, jobs = 3000, 4
	codes, streams := s.startJobs(t, jobs, rows)
	s.replica(t)
	killed := time.Now()
	doomed.Kill() // SIGKILL: no checkpoint handed back, no clean stream end
	s.checkFinished(t, codes, streams, rows)
	t.Logf("all %d jobs finished on the surviving replica %v after the kill", jobs, time.Since(killed).Round(100*time.Millisecond))
	if leftovers, _ := filepath.Glob(filepath.Join(s.filesDir, "files", "*.csv")); len(leftovers) != jobs {
		t.Errorf("%d files in the shared directory, want %d", len(leftovers), jobs)
	}
}

// checkFinished waits for every subscriber of codes: exactly one terminal
// event, COMPLETED, seqs strictly increasing, and a file that verifies.
func (s *scaledStack) checkFinished(t *testing.T, codes []string, streams map[string][]<-chan []stack.Job, rows int) {
	t.Helper()
	for _, code := range codes {
		var end stack.Job
		for i, stream := range streams[code] {
			seen := <-stream
			terminal, prev := 0, int64(0)
			for _, j := range seen {
				if j.Seq <= prev {
					t.Errorf("%s subscriber %d: seq %d after %d (duplicate or going back)", code, i, j.Seq, prev)
				}
				prev = j.Seq
				if j.Status.Terminal() {
					terminal++
					end = j
				}
			}
			if terminal != 1 || end.Status != stack.StatusCompleted {
				t.Fatalf("%s subscriber %d: %d terminal events, last %+v; want exactly one COMPLETED", code, i, terminal, end)
			}
		}
		got, err := stack.Download(t.Context(), s.browser, s.bffURL+end.File.URL)
		if want := stack.ExpectedSHA256(code, rows); err != nil || got != want || end.File.SHA256 != want {
			t.Errorf("%s: downloaded sha256 %s (%v), announced %s, want %s", code, got, err, end.File.SHA256, want)
		}
	}
}

// startJobs creates n jobs through the BFF, subscribes to each twice and
// waits until every one is mid-generation.
func (s *scaledStack) startJobs(t *testing.T, n, rows int) ([]string, map[string][]<-chan []stack.Job) {
	t.Helper()
	const subscribers = 2
	var codes []string
	for range n {
		resp := s.post(t, fmt.Sprintf(`{"rows":%d,"durationMs":4000}`, rows))
		var j stack.Job
		if err := json.NewDecoder(resp.Body).Decode(&j); err != nil || resp.StatusCode != http.StatusAccepted {
			t.Fatalf("create through the BFF: %d %v", resp.StatusCode, err)
		}
		_ = resp.Body.Close()
		codes = append(codes, j.Code)
	}
	progressed := make(chan string, n*subscribers)
	streams := map[string][]<-chan []stack.Job{}
	for _, code := range codes {
		for range subscribers {
			streams[code] = append(streams[code], s.subscribe(t, code, progressed))
		}
	}
	for range n * subscribers {
		select {
		case <-progressed:
		case <-time.After(20 * time.Second):
			t.Fatal("jobs did not start")
		}
	}
	return codes, streams
}

func TestARedisRestartMidRunLosesNoJobAndNoTerminalEvent(t *testing.T) {
	s := startScaledStack(t)
	s.replica(t)
	s.replica(t)
	const rows = 3000
	codes, streams := s.startJobs(t, 4, rows)
	s.redis.Stop() // SIGKILL; AOF is fsynced at every write
	time.Sleep(time.Second)
	s.redis.Start()
	s.checkFinished(t, codes, streams, rows)
}

// untilNot503 repeats do while the answer is 503 and the deadline has not
// passed, and returns the last answer, its body unread.
func untilNot503(t *testing.T, deadline time.Time, do func() *http.Response) *http.Response {
	t.Helper()
	for {
		resp := do()
		if resp.StatusCode != http.StatusServiceUnavailable || time.Now().After(deadline) {
			return resp
		}
		_ = resp.Body.Close()
		time.Sleep(200 * time.Millisecond)
	}
}

func TestWhileRedisIsDownCreatesFailWith503AndAClearError(t *testing.T) {
	s := startScaledStack(t)
	s.replica(t)
	s.replica(t)
	if resp := s.post(t, `{"rows":10,"durationMs":0}`); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("create with Redis up: %d", resp.StatusCode)
	}
	s.redis.Stop()
	resp := s.post(t, `{"rows":10,"durationMs":0}`)
	var body struct {
		Error struct{ Code, Message string }
	}
	err := json.NewDecoder(resp.Body).Decode(&body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || err != nil || body.Error.Code != "STORE_UNAVAILABLE" || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("create with Redis down: %d %+v %v, Retry-After %q; want 503 STORE_UNAVAILABLE with Retry-After", resp.StatusCode, body, err, resp.Header.Get("Retry-After"))
	}
	if strings.Contains(body.Error.Message, "127.0.0.1") || strings.Contains(body.Error.Message, "dial") {
		t.Errorf("the error leaks internals: %q", body.Error.Message)
	}

	s.redis.Start() // AOF on: what was there is back
	// Each replica serves again within about a second (after failed dials,
	// go-redis redials about once a second), not necessarily together.
	deadline := time.Now().Add(15 * time.Second)
	resp = untilNot503(t, deadline, func() *http.Response { return s.post(t, `{"rows":10,"durationMs":0}`) })
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("create after Redis came back: %d", resp.StatusCode)
	}
	listResp := untilNot503(t, deadline, func() *http.Response {
		r, err := s.browser.Get(s.bffURL + "/api/exports")
		if err != nil {
			t.Fatal(err)
		}
		return r
	})
	var list struct{ Exports []stack.Job }
	err = json.NewDecoder(listResp.Body).Decode(&list)
	_ = listResp.Body.Close()
	if listResp.StatusCode != http.StatusOK || err != nil {
		t.Fatalf("listing after Redis came back: %d, %v", listResp.StatusCode, err)
	}
	if len(list.Exports) != 2 {
		t.Errorf("after Redis came back: %d exports; want the 2 created while it was up (a refused create stores nothing)", len(list.Exports))
	}
}
