package e2e_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	sse "github.com/tmaxmax/go-sse"

	"github.com/exportstream/exportstream/e2e/stack"
	"github.com/exportstream/exportstream/internal/testenv"
)

// Hostile clients against the real binaries: one session opening 1,000
// streams, many more than the server allows in all, slowloris headers,
// downloads abandoned midway. Leaks are read from the processes
// themselves: /proc/<pid>/fd and go_goroutines on /metrics.

// usage is what a process holds: descriptors and goroutines.
type usage struct{ fds, goroutines int }

func usageOf(t *testing.T, p *stack.Proc) usage {
	t.Helper()
	return usage{stack.OpenFDs(t, p.Pid()), int(stack.Metric(t, p.URL, "go_goroutines"))}
}

// settles waits until p's usage is back within slack of base: the
// process releases what a request held only after it notices the client
// left, so this polls, bounded in count and time.
func settles(t *testing.T, name string, p *stack.Proc, base usage, slack usage) usage {
	t.Helper()
	var now usage
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for range 200 { // 10 s at most
		if now = usageOf(t, p); now.fds <= base.fds+slack.fds && now.goroutines <= base.goroutines+slack.goroutines {
			return now
		}
		<-tick.C
	}
	t.Fatalf("%s: %d fds and %d goroutines, want at most %d and %d (baseline %+v): a leak", name, now.fds, now.goroutines, base.fds+slack.fds, base.goroutines+slack.goroutines, base)
	return now
}

// newSession is a client with a session of its own.
func newSession(t *testing.T, bff string) *http.Client {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	resp, err := c.Get(bff + "/api/exports") // a page's first list starts the session
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	t.Cleanup(c.CloseIdleConnections)
	return c
}

// openStreams opens n /api/events streams at once for c's session and
// returns the open ones and the count of each refusal's status and code.
func openStreams(ctx context.Context, t *testing.T, c *http.Client, bff string, n int) ([]*http.Response, map[string]int) {
	t.Helper()
	var (
		mu      sync.Mutex
		open    []*http.Response
		refused = map[string]int{}
		wg      sync.WaitGroup
	)
	for range n {
		wg.Go(func() {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, bff+"/api/events", nil)
			resp, err := c.Do(req)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				refused["error: "+err.Error()]++
				return
			}
			if resp.StatusCode == http.StatusOK {
				open = append(open, resp)
				return
			}
			var e struct{ Error struct{ Code string } }
			_ = json.NewDecoder(resp.Body).Decode(&e)
			_ = resp.Body.Close()
			key := fmt.Sprintf("%d %s", resp.StatusCode, e.Error.Code)
			if resp.Header.Get("Retry-After") != "" {
				key += " Retry-After"
			}
			refused[key]++
		})
	}
	wg.Wait()
	return open, refused
}

func closeAll(streams []*http.Response) {
	for _, r := range streams {
		_ = r.Body.Close()
	}
}

// steady is p's usage once three readings in a row agree (connections
// the clients closed are gone), bounded in count and time.
func steady(t *testing.T, p *stack.Proc) usage {
	t.Helper()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	prev, same := usage{-1, -1}, 0
	for range 200 {
		now := usageOf(t, p)
		if now == prev {
			if same++; same == 2 {
				return now
			}
		} else {
			prev, same = now, 0
		}
		<-tick.C
	}
	t.Fatalf("usage of %s (pid %d) never settled: last %+v", p.Cmd.Name, p.Pid(), prev)
	return prev
}

func TestOneSessionOpening1000StreamsGets429PastItsLimitAndTheServer503PastItsOwn(t *testing.T) {
	const perSession, total = 20, 50
	backend := stack.Backend(t, "-memory")
	bff := stack.BFF(t, backend.URL, "-max-streams-per-session", strconv.Itoa(perSession), "-max-streams", strconv.Itoa(total))
	url := bff.URL
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()

	flood := func() {
		hostile := newSession(t, url)
		defer hostile.CloseIdleConnections()
		open, refused := openStreams(ctx, t, hostile, url, 1000)
		if len(open) != perSession || refused["429 TOO_MANY_STREAMS"] != 1000-perSession || len(refused) != 1 {
			t.Fatalf("one session, 1,000 streams at once: %d open, refused %v; want %d open and %d × 429 TOO_MANY_STREAMS", len(open), refused, perSession, 1000-perSession)
		}
		// Others fill the server up to its own limit, then get 503.
		all := [][]*http.Response{open}
		got503 := 0
		for range 3 {
			other := newSession(t, url)
			defer other.CloseIdleConnections()
			o, r := openStreams(ctx, t, other, url, perSession)
			all = append(all, o)
			got503 += r["503 TOO_MANY_STREAMS Retry-After"]
		}
		opened := 0
		for _, o := range all {
			opened += len(o)
		}
		if opened != total || got503 != 4*perSession-total {
			t.Fatalf("4 sessions × %d streams with MAX_STREAMS=%d: %d open, %d × 503; want %d and %d", perSession, total, opened, got503, total, 4*perSession-total)
		}
		if n := stack.Metric(t, url, "exportstream_bff_subscribers_active"); n != total {
			t.Errorf("subscribers_active = %v, want %d", n, total)
		}
		for _, o := range all {
			closeAll(o)
		}
		// The BFF notices the hang-ups (no request of its own is pending on
		// a stream) and counts the limits back: the hostile session may
		// open streams again.
		stack.MetricReaches(t, url, "exportstream_bff_subscribers_active", 0)
		o, r := openStreams(ctx, t, hostile, url, 1)
		closeAll(o)
		if len(o) != 1 {
			t.Errorf("a stream after the flood: %v", r)
		}
	}
	// Each flood leaves the BFF's pool of idle keep-alive connections to
	// the backend (one per concurrent backend call, kept 90 s) as large as
	// the flood needed: an open connection at both ends, and two goroutines
	// in the BFF. Counted from the backend's side, they are allowed; past
	// them the BFF must be back where it started.
	base, pooledBase := usageOf(t, bff), stack.ConnsTo(t, bff.Pid(), backend)
	for round := 1; round <= 2; round++ {
		flood()
		now := steady(t, bff)
		pooled := stack.ConnsTo(t, bff.Pid(), backend) - pooledBase
		if now.fds > base.fds+pooled+2 || now.goroutines > base.goroutines+2*pooled+4 {
			t.Fatalf("flood %d: bff at %+v from %+v with %d pooled backend connections; want at most +%d fds and +%d goroutines: a leak",
				round, now, base, pooled, pooled+2, 2*pooled+4)
		}
		t.Logf("flood %d: 1,000 streams from one session (%d open, %d × 429) + %d from 3 more (%d open in all, %d × 503); bff %+v → %+v, of which %d pooled backend connections",
			round, perSession, 1000-perSession, 3*perSession, total, 4*perSession-total, base, now, pooled)
	}
	if n := stack.Metric(t, url, "exportstream_bff_subscribers_active"); n != 0 {
		t.Errorf("subscribers_active = %v after every stream closed, want 0", n)
	}
}

func TestSlowlorisHeadersAreCutOffByReadHeaderTimeoutWhileOthersAreServed(t *testing.T) {
	const conns, timeout = 200, time.Second
	bff := stack.BFF(t, stack.Backend(t, "-memory").URL, "-read-header-timeout", timeout.String())
	url, addr := bff.URL, bff.Addr
	base := usageOf(t, bff)

	// Each connection sends a request line, then one header byte every
	// 100 ms: 100 bytes would take 10 s, ten times the timeout.
	begin := time.Now()
	cut := make(chan time.Duration, conns)
	var wg sync.WaitGroup
	for range conns {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = conn.Close() }()
		wg.Go(func() {
			opened := time.Now()
			closed := make(chan struct{})
			go func() { // the server's answer, if any, then its close
				defer close(closed)
				_, _ = io.Copy(io.Discard, conn)
			}()
			_, _ = io.WriteString(conn, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
			tick := time.NewTicker(100 * time.Millisecond)
			defer tick.Stop()
			for range 100 {
				select {
				case <-closed:
					cut <- time.Since(opened)
					return
				case <-tick.C:
					if _, err := conn.Write([]byte("a")); err != nil {
						<-closed
						cut <- time.Since(opened)
						return
					}
				}
			}
			cut <- -1 // sent every byte without being cut off
		})
	}
	// An honest client is served at once during the attack.
	resp, err := (&http.Client{Timeout: timeout / 2}).Get(url + "/healthz")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("an honest request during the attack: %v %v", resp, err)
	} else {
		_ = resp.Body.Close()
	}
	wg.Wait()
	close(cut)
	var slowest time.Duration
	for d := range cut {
		if d < 0 {
			t.Fatal("a slowloris connection sent 10 s of headers without being cut off")
		}
		slowest = max(slowest, d)
	}
	if slowest > 3*timeout {
		t.Errorf("slowest cut-off after %v, want within %v of a %v ReadHeaderTimeout", slowest, 2*timeout, timeout)
	}
	after := settles(t, "bff after the slowloris connections", bff, base, usage{fds: 4, goroutines: 8})
	t.Logf("%d slowloris connections cut off within %v (timeout %v, whole attack %v); bff baseline %+v, after %+v", conns, slowest.Round(time.Millisecond), timeout, time.Since(begin).Round(time.Millisecond), base, after)
}

func TestDownloadsAbandonedMidwayLeakNothingInTheBFFOrTheBackend(t *testing.T) {
	const rows, abandoned = 300_000, 40
	be := stack.Backend(t, "-data-dir", t.TempDir())
	bff := stack.BFF(t, be.URL)
	url := bff.URL
	c := newSession(t, url)
	resp, err := c.Post(url+"/api/exports", "application/json", strings.NewReader(fmt.Sprintf(`{"rows":%d,"durationMs":0}`, rows)))
	if err != nil {
		t.Fatal(err)
	}
	var j struct {
		Code string
		File struct{ URL, SHA256 string }
	}
	_ = json.NewDecoder(resp.Body).Decode(&j)
	_ = resp.Body.Close()
	stream, err := c.Get(url + "/api/exports/" + j.Code + "/events")
	if err != nil {
		t.Fatal(err)
	}
	for ev, err := range sse.Read(stream.Body, nil) { // until COMPLETED ends the stream
		if err != nil {
			t.Fatal(err)
		}
		_ = json.Unmarshal([]byte(ev.Data), &j)
	}
	_ = stream.Body.Close()
	if j.File.URL == "" {
		t.Fatalf("export did not complete: %+v", j)
	}
	download := func(c *http.Client, limit int64) (int64, string) {
		resp, err := c.Get(url + j.File.URL)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = resp.Body.Close() }()
		h := sha256.New()
		n, _ := io.Copy(h, io.LimitReader(resp.Body, limit))
		return n, hex.EncodeToString(h.Sum(nil))
	}
	size, _ := download(c, 1<<40) // warm both processes up: pooled connections, buffers
	c.CloseIdleConnections()
	bffBase, beBase := usageOf(t, bff), usageOf(t, be)

	// Browsers that leave after 256 KiB of a multi-MiB file, 8 at a time.
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for range abandoned {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			quitter := &http.Client{Jar: c.Jar, Transport: &http.Transport{DisableKeepAlives: true}}
			if n, _ := download(quitter, 256<<10); n != 256<<10 {
				t.Errorf("read %d bytes before leaving, want %d", n, 256<<10)
			}
		})
	}
	wg.Wait()
	slack := usage{fds: 4, goroutines: 8}
	bffAfter := settles(t, "bff", bff, bffBase, slack)
	beAfter := settles(t, "backend", be, beBase, slack)
	t.Logf("%d downloads of %d bytes abandoned after 256 KiB: bff %+v → %+v, backend %+v → %+v", abandoned, size, bffBase, bffAfter, beBase, beAfter)

	if n, sum := download(c, 1<<40); n != size || sum != j.File.SHA256 {
		t.Errorf("a whole download afterwards: %d bytes sha256 %s, want %d and %s", n, sum, size, j.File.SHA256)
	}
}

// startWithFileLimit runs the BFF under an open-file limit of files (soft
// and hard: the Go runtime raises the soft one to the hard one).
func startWithFileLimit(t *testing.T, files int, backendURL string) *stack.Proc {
	t.Helper()
	prlimit, err := exec.LookPath("prlimit")
	if err != nil {
		testenv.Missing(t, "prlimit (util-linux), to run the BFF under a low open-file limit: %v", err)
	}
	c := stack.BFFCmd(t, backendURL)
	c.Args = append([]string{fmt.Sprintf("--nofile=%d:%d", files, files), c.Path}, c.Args...)
	c.Path = prlimit
	return stack.Run(t, c)
}

func TestAtItsOpenFileLimitTheBFFAnswersEveryStreamPastItsBudget503AtOnceAndStillServesOtherRequests(t *testing.T) {
	const files, browsers = 300, 400
	bff := startWithFileLimit(t, files, stack.Backend(t, "-memory").URL)
	url := bff.URL
	budget := int(stack.Metric(t, url, "exportstream_bff_streams_max"))
	if budget <= 0 || budget >= files {
		t.Fatalf("streams_max = %d under a limit of %d files", budget, files)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()

	// Each browser its own session and one /api/events stream, as users
	// are; more browsers than the process has files.
	type answer struct {
		resp *http.Response
		key  string
		took time.Duration
	}
	answers := make([]answer, browsers)
	var wg sync.WaitGroup
	for i := range browsers {
		wg.Go(func() {
			jar, _ := cookiejar.New(nil)
			c := &http.Client{Jar: jar, Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
			t.Cleanup(c.CloseIdleConnections)
			start := time.Now()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/api/events", nil)
			resp, err := c.Do(req)
			a := answer{took: time.Since(start)}
			switch {
			case err != nil:
				a.key = "error: " + err.Error()
			case resp.StatusCode == http.StatusOK:
				a.resp, a.key = resp, "200"
			default:
				var e struct{ Error struct{ Code string } }
				_ = json.NewDecoder(resp.Body).Decode(&e)
				_ = resp.Body.Close()
				a.key = fmt.Sprintf("%d %s", resp.StatusCode, e.Error.Code)
				if resp.Header.Get("Retry-After") != "" {
					a.key += " Retry-After"
				}
			}
			answers[i] = a
		})
	}
	wg.Wait()
	count := map[string]int{}
	var slowest time.Duration
	var open []*http.Response
	for _, a := range answers {
		count[a.key]++
		slowest = max(slowest, a.took)
		if a.resp != nil {
			open = append(open, a.resp)
		}
	}
	defer closeAll(open)
	t.Logf("%d browsers, %d files, a budget of %d streams: %v; slowest answer %v", browsers, files, budget, count, slowest)
	for k := range count {
		if k != "200" && k != "503 TOO_MANY_STREAMS Retry-After" && k != "503 TOO_MANY_CONNECTIONS Retry-After" {
			t.Errorf("%d × %q: every browser past the budget must get a 503 with Retry-After", count[k], k)
		}
	}
	if len(open) != budget {
		t.Errorf("%d streams open, want the budget, %d", len(open), budget)
	}
	if slowest > 10*time.Second {
		t.Errorf("the slowest answer took %v: a browser past the budget waited instead of being refused", slowest)
	}

	// Full of streams, the server still answers other requests: a health
	// check and a create from a browser whose connection is its stream.
	if resp, err := http.Get(url + "/healthz"); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("/healthz with every stream taken: %v %v", resp, err)
	} else {
		_ = resp.Body.Close()
	}
	if n := stack.OpenFDs(t, bff.Pid()); n > files {
		t.Errorf("the BFF holds %d files under a limit of %d", n, files)
	}

	// A stream closed frees a place for the next browser.
	_ = open[0].Body.Close()
	stack.MetricReaches(t, url, "exportstream_bff_subscribers_active", float64(budget-1))
	c := newSession(t, url)
	o, r := openStreams(ctx, t, c, url, 1)
	defer closeAll(o)
	if len(o) != 1 {
		t.Errorf("a stream after one closed: %v", r)
	}
}
