package e2e_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	sse "github.com/tmaxmax/go-sse"

	"github.com/exportstream/exportstream/e2e/stack"
	"github.com/exportstream/exportstream/internal/redistest"
	"github.com/exportstream/exportstream/internal/testenv"
)

// The backend killed with SIGKILL under browsers that watch their exports
// through the real BFF, and restarted on the same address (and data
// directory) within 2 s: every browser stream stays open, resumes from the
// seq it had, and ends with exactly one terminal event.

// killLoad is what a kill -9 test puts on the stack before the kill: jobs
// sessions (browsers, each its own cookie jar) start one export each
// through the BFF and watch it with perJob streams on
// /api/exports/{code}/events and multiplex streams on /api/events, the
// tab's multiplexed stream. Every stream is its own TCP connection.
type killLoad struct {
	jobs, perJob, multiplex int
	rows, durationMs        int
}

// killRun is a killLoad under way.
type killRun struct {
	killLoad
	bffURL   string
	browsers []*http.Client
	codes    []string // codes[i] is browsers[i]'s export
	subs     []*killSubscriber

	began      time.Time
	created    time.Duration // how long the creates took
	opened     chan struct{} // a signal per stream that got its first event
	progressed chan struct{} // a signal per stream that saw its export under way
	cancel     context.CancelFunc
	done       chan struct{} // closed when every subscriber has returned
}

// killSubscriber is one browser stream's record.
type killSubscriber struct {
	code      string
	multiplex bool

	ids        []string
	jobs       []stack.Job
	received   []time.Time
	underWay   bool // it saw its export IN_PROGRESS with progress above 0
	reconnects int
	err        error
}

// describe tells what s has seen, for a failure message.
func (s *killSubscriber) describe() string {
	last := "no event"
	if n := len(s.jobs); n > 0 {
		last = fmt.Sprintf("last %s %d%% seq %d", s.jobs[n-1].Status, s.jobs[n-1].Progress, s.jobs[n-1].Seq)
	}
	return fmt.Sprintf("%d events, %s, %d reconnects, err %v", len(s.jobs), last, s.reconnects, s.err)
}

// killCreators is how many browsers create their export at once.
const killCreators = 8

// start creates the exports and opens every stream.
func (l killLoad) start(t *testing.T, bffURL string) *killRun {
	t.Helper()
	transport := &http.Transport{MaxIdleConnsPerHost: killCreators}
	t.Cleanup(transport.CloseIdleConnections)
	r := &killRun{killLoad: l, bffURL: bffURL, browsers: make([]*http.Client, l.jobs), codes: make([]string, l.jobs),
		began: time.Now(), done: make(chan struct{})}
	for i := range r.browsers {
		jar, _ := cookiejar.New(nil)
		r.browsers[i] = &http.Client{Jar: jar, Transport: transport}
	}
	var next atomic.Int64
	errs := make([]error, killCreators)
	var creators sync.WaitGroup
	for c := range killCreators {
		creators.Go(func() {
			for i := int(next.Add(1) - 1); i < l.jobs && errs[c] == nil; i = int(next.Add(1) - 1) {
				r.codes[i], errs[c] = r.create(t.Context(), i)
			}
		})
	}
	creators.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	r.created = time.Since(r.began)

	ctx, cancel := context.WithCancel(t.Context())
	r.cancel = cancel
	r.opened = make(chan struct{}, l.jobs*(l.perJob+l.multiplex))
	r.progressed = make(chan struct{}, l.jobs*(l.perJob+l.multiplex))
	var wg sync.WaitGroup
	for i, code := range r.codes {
		for k := range l.perJob + l.multiplex {
			s := &killSubscriber{code: code, multiplex: k >= l.perJob}
			r.subs = append(r.subs, s)
			wg.Go(func() { s.follow(ctx, r.browsers[i], bffURL, r.opened, r.progressed) })
		}
	}
	go func() { wg.Wait(); close(r.done) }()
	t.Cleanup(func() { cancel(); <-r.done })
	return r
}

// allOpen returns once every stream has its first event (the export's
// snapshot: the BFF has it subscribed), or fails t if that takes longer
// than within since start began.
func (r *killRun) allOpen(t *testing.T, within time.Duration) {
	t.Helper()
	r.await(t, r.opened, "got a first event", within, func(s *killSubscriber) bool { return len(s.jobs) > 0 })
}

// underWay returns once every stream has seen its export under way
// (IN_PROGRESS, progress above 0), or fails t if that takes longer than
// within since start began.
func (r *killRun) underWay(t *testing.T, within time.Duration) {
	t.Helper()
	r.await(t, r.progressed, "saw their export under way", within, func(s *killSubscriber) bool { return s.underWay })
}

// await takes a signal from every stream; past the deadline it stops the
// streams and fails t, describing some of those for which done is false.
func (r *killRun) await(t *testing.T, signal <-chan struct{}, what string, within time.Duration, done func(*killSubscriber) bool) {
	t.Helper()
	deadline := time.NewTimer(within - time.Since(r.began))
	defer deadline.Stop()
	for n := range r.subs {
		select {
		case <-signal:
		case <-deadline.C:
			r.cancel()
			<-r.done
			var late []string
			for i, s := range r.subs {
				if !done(s) && len(late) < 5 {
					late = append(late, fmt.Sprintf("stream %d (%s): %s", i, s.code, s.describe()))
				}
			}
			t.Fatalf("%d of %d streams %s within %v (exports created in %v); not, among others:\n%s",
				n, len(r.subs), what, within, r.created, strings.Join(late, "\n"))
		}
	}
	t.Logf("%d exports created in %v, %d streams; every one %s %v after the first create",
		r.jobs, r.created.Round(time.Millisecond), len(r.subs), what, time.Since(r.began).Round(time.Millisecond))
}

// create starts browser i's export through the BFF and returns its code.
func (r *killRun) create(ctx context.Context, i int) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.bffURL+"/api/exports",
		strings.NewReader(fmt.Sprintf(`{"rows":%d,"durationMs":%d}`, r.rows, r.durationMs)))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Origin", r.bffURL)
	resp, err := r.browsers[i].Do(req)
	if err != nil {
		return "", fmt.Errorf("create %d through the BFF: %w", i, err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusAccepted {
		return "", fmt.Errorf("create %d through the BFF: %d", i, resp.StatusCode)
	}
	var j stack.Job
	if err := json.NewDecoder(resp.Body).Decode(&j); err != nil {
		return "", fmt.Errorf("create %d through the BFF: %w", i, err)
	}
	return j.Code, nil
}

// finish waits (up to within) for every stream's terminal event and checks
// each: ids carry the seq, seqs strictly increase (the resume after the
// kill went on from the seq the stream had: no duplicate, nothing going
// back), exactly one terminal event, the last, COMPLETED, the same for
// every stream of its export, at least one event after the kill, and no
// stream dropped (the BFF held them while it resumed upstream). Then every
// file downloads through the BFF with the SHA-256 recomputed from its code.
func (r *killRun) finish(t *testing.T, killed time.Time, within time.Duration) {
	t.Helper()
	select {
	case <-r.done:
	case <-time.After(within):
		r.cancel()
		<-r.done
		t.Fatalf("not every stream got a terminal event within %v of the kill", within)
	}
	allDone := time.Since(killed)

	ends := map[string]stack.Job{}
	events, reconnects := 0, 0
	var resumedIn time.Duration // the longest wait for a first event after the kill
	var failed []string
	for n, s := range r.subs {
		events += len(s.jobs)
		reconnects += s.reconnects
		end, first, err := s.check(killed)
		if other, ok := ends[s.code]; err == nil && ok && (other.Seq != end.Seq || other.File.SHA256 != end.File.SHA256) {
			err = fmt.Errorf("terminal event seq %d, another stream's %d", end.Seq, other.Seq)
		}
		if err != nil {
			failed = append(failed, fmt.Sprintf("stream %d (%s, multiplexed %v): %v", n, s.code, s.multiplex, err))
			continue
		}
		resumedIn = max(resumedIn, first)
		ends[s.code] = end
	}
	if len(failed) > 0 {
		t.Fatalf("%d of %d streams failed, among them:\n%s", len(failed), len(r.subs), strings.Join(failed[:min(len(failed), 5)], "\n"))
	}
	// A backend restart within the BFF's give-up window is invisible to
	// browsers: their streams stay open while the relay resumes upstream.
	if reconnects != 0 {
		t.Errorf("%d browser streams were dropped and reconnected; the BFF should have held them open", reconnects)
	}
	r.verifyFiles(t, ends)
	t.Logf("%d exports × %d streams: %d events checked, %d terminal, lost 0, %d reconnects; first event after the kill within %v for every stream, all terminal %v after the kill",
		r.jobs, r.perJob+r.multiplex, events, len(r.subs), reconnects, resumedIn.Round(time.Millisecond), allDone.Round(time.Millisecond))
}

// check reads s's record: ids carry the seq, seqs strictly increase,
// exactly one terminal event, the last, COMPLETED with a file, and an event
// received after killed. It returns the terminal event and how long after
// killed the first event after it came.
func (s *killSubscriber) check(killed time.Time) (stack.Job, time.Duration, error) {
	if s.err != nil {
		return stack.Job{}, 0, s.err
	}
	prev, terminal := int64(0), 0
	first := time.Duration(-1)
	for i, j := range s.jobs {
		want := strconv.FormatInt(j.Seq, 10)
		if s.multiplex {
			want = j.Code + ":" + want
		}
		if s.ids[i] != want || j.Code != s.code {
			return stack.Job{}, 0, fmt.Errorf("event id %q for %s seq %d", s.ids[i], j.Code, j.Seq)
		}
		if j.Seq <= prev {
			return stack.Job{}, 0, fmt.Errorf("seq %d after %d (a duplicate or going back)", j.Seq, prev)
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
	switch {
	case terminal != 1 || end.Status != stack.StatusCompleted || end.File == nil:
		return stack.Job{}, 0, fmt.Errorf("%d terminal events, last %s %+v; want exactly one, COMPLETED with a file", terminal, end.Status, end.Error)
	case first < 0:
		return stack.Job{}, 0, errors.New("no event after the kill; the export had ended before it")
	}
	return end, first, nil
}

// verifyFiles downloads every export's file through its browser's session
// and checks it, and the SHA-256 its terminal event announced, against the
// checksum recomputed from the code.
func (r *killRun) verifyFiles(t *testing.T, ends map[string]stack.Job) {
	t.Helper()
	want := expectedSHA256Of(r.codes, r.rows)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range killCreators {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < len(r.codes); i = int(next.Add(1) - 1) {
				code := r.codes[i]
				end := ends[code]
				got, err := stack.Download(t.Context(), r.browsers[i], r.bffURL+end.File.URL)
				if err != nil {
					t.Errorf("%s: %v", code, err)
				} else if got != want[code] || end.File.SHA256 != want[code] {
					t.Errorf("%s: downloaded sha256 %s, announced %s, want %s", code, got, end.File.SHA256, want[code])
				}
			}
		})
	}
	wg.Wait()
}

// follow reads s's stream through the BFF as EventSource would, resuming with
// Last-Event-ID if it drops, until its export's terminal event.
func (s *killSubscriber) follow(ctx context.Context, browser *http.Client, bffURL string, opened, progressed chan<- struct{}) {
	path := "/api/exports/" + s.code + "/events"
	if s.multiplex {
		path = "/api/events"
	}
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
			var j stack.Job
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
			if len(s.jobs) == 1 {
				opened <- struct{}{}
			}
			if !s.underWay && j.Status == stack.StatusInProgress && j.Progress > 0 {
				s.underWay = true
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

// kill9AndRestart kills proc, a backend, with SIGKILL (no clean stream
// end, no checkpoint handed back) and starts it again with its flags on the
// same address. It returns when the old one was killed; a restart slower
// than 2 s fails t.
func kill9AndRestart(t *testing.T, proc *stack.Proc) time.Time {
	t.Helper()
	killed := time.Now()
	proc.Kill()
	restarted := proc.MustRestart(t)
	restartedIn := time.Since(killed)
	if restarted.URL != proc.URL {
		t.Fatalf("restarted on %s, want %s", restarted.URL, proc.URL)
	}
	if restartedIn > 2*time.Second {
		t.Errorf("the backend took %v to restart, want within 2 s", restartedIn)
	}
	t.Logf("backend killed and listening again on %s %v later", proc.URL, restartedIn.Round(time.Millisecond))
	return killed
}

// killSingleBackend runs load through the real BFF on one backend (its
// own data directory, a worker per export), and once every export is
// generating calls beforeKill, kills the backend with SIGKILL, restarts it
// on the same address and directory, and checks that every stream went on
// to one COMPLETED; it returns the backend's URL.
func killSingleBackend(t *testing.T, load killLoad, progressInterval string, beforeKill func(backendURL string)) string {
	t.Helper()
	backend := stack.Backend(t, "-data-dir", t.TempDir(), "-workers", strconv.Itoa(load.jobs), "-progress-interval", progressInterval)
	backendURL := backend.URL
	run := load.start(t, stack.BFF(t, backendURL).URL)
	run.underWay(t, 30*time.Second)
	// Every export is generating: the backend says so, just before the kill.
	if n := backendJobs(t, backendURL, "IN_PROGRESS"); n != float64(load.jobs) {
		t.Fatalf("%v exports IN_PROGRESS before the kill, want %d (the exports are too short for this machine?)", n, load.jobs)
	}
	beforeKill(backendURL)
	killed := kill9AndRestart(t, backend)
	run.finish(t, killed, 45*time.Second)
	checkAllCompleted(t, backendURL, load.jobs)
	return backendURL
}

// The full size for a backend crash: 100 exports generating at
// once, each watched by ten streams (nine per-job, one multiplexed), 1,000
// in all.
func TestKill9OfTheBackendUnder100JobsAnd1000SubscribersLosesNothing(t *testing.T) {
	needFileDescriptors(t, 4096) // 1,000 streams: one socket each in this process and in the BFF
	killSingleBackend(t, killLoad{jobs: 100, perJob: 9, multiplex: 1, rows: 2000, durationMs: 15000}, "250ms", func(string) {})
}

// One code per session, 1,000 sessions: 1,000 codes subscribed on the BFF's
// one multiplexed upstream when the backend is killed mid-stream. The BFF
// resubscribes every code on the restarted backend from the seq it had.
//
// Here the seq a code is resubscribed from cannot show: the restarted
// embedded store gives each unfinished job a seq above every one it may
// have sent (its reserved ceiling + 1), so the first snapshot after the
// restart is newer than anything a stream has, whatever seq is asked. The
// Redis test below, whose jobs go on through the kill, is the one that
// tells a resubscription from the stream's seq from one from 0.
func TestKill9OfTheBackendWith1000CodesOnTheBFFsOneUpstreamResumesEveryStreamFromItsSeq(t *testing.T) {
	needFileDescriptors(t, 4096) // 1,000 streams here and in the BFF; 1,000 files being written in the backend
	const codes = 1000
	backendURL := killSingleBackend(t, killLoad{jobs: codes, perJob: 1, rows: 400, durationMs: 15000}, "1s", func(backendURL string) {
		// Every code subscribed, all on one stream.
		stack.CheckMetric(t, backendURL, "exportstream_backend_mux_streams_open", 1)
		stack.CheckMetric(t, backendURL, "exportstream_backend_mux_subscriptions_active", codes)
	})
	// The BFF came back with one stream, opened once, and subscribed every
	// code on it once.
	stack.CheckMetric(t, backendURL, "exportstream_backend_mux_streams_open", 1)
	stack.CheckMetric(t, backendURL, "exportstream_backend_mux_streams_opened_total", 1)
	stack.CheckMetric(t, backendURL, "exportstream_backend_mux_subscribed_total", codes)
}

// The same in Redis mode, with the upstream and the jobs on different
// replicas: the BFF's backend URL is replica A, so its one upstream (and
// every subscription call) lives on A, while the exports are generated on
// replica B. A is killed mid-stream with 1,000 codes subscribed and
// restarted on its address; B's jobs go on meanwhile, and every browser
// stream resumes from its seq once the BFF is subscribed again on A. B
// reports progress once a second, longer than A's restart and the first
// resubscriptions take, so many codes are subscribed again with nothing
// newer than the seq the BFF has: a resubscription from an older seq would
// send that snapshot again, a duplicate.
//
// The backend has no API-only mode (-workers is at least 1): A runs one
// worker, which a long export started on A before anything else keeps
// busy. The browsers' exports wait in the shared queue until B starts and
// its 1,000 workers take them; the queue's pending list says which
// replica took each.
func TestKill9OfTheReplicaHoldingTheBFFsUpstreamWhileAnotherRunsThe1000JobsResumesEveryStreamFromItsSeq(t *testing.T) {
	needFileDescriptors(t, 4096) // B: 1,000 files being written and a Redis connection per worker
	load := killLoad{jobs: 1000, perJob: 1, rows: 400, durationMs: 16000}
	rs := redistest.Start(t)
	filesDir := t.TempDir()
	replica := func(workers int) *stack.Proc {
		return stack.Backend(t, "-data-dir", filesDir, "-redis-url", rs.URL()+"?dial_timeout=1s&max_retries=1",
			"-workers", strconv.Itoa(workers), "-queue-size", strconv.Itoa(2*load.jobs), "-progress-interval", "1s", "-claim-idle", "30s")
	}
	a := replica(1)
	aURL := a.URL
	blocker := stack.Create(t, aURL, `{"rows":100,"durationMs":600000}`) // A's one worker, for the whole test
	blocking := false
	for j := range stack.Watch(t, aURL, blocker.Code, 0) {
		if blocking = j.Status == stack.StatusInProgress; blocking {
			break
		}
	}
	if !blocking {
		t.Fatal("A's worker did not take the blocking export")
	}
	bffURL := stack.BFF(t, aURL).URL
	// The exports wait in the queue until every browser has its stream;
	// then B starts and takes them all at once.
	run := load.start(t, bffURL)
	run.allOpen(t, 30*time.Second)
	b := replica(load.jobs)
	bURL := b.URL
	run.underWay(t, 40*time.Second)

	// Every export generating, on B; every code subscribed on A's one stream.
	if n := backendJobs(t, aURL, "IN_PROGRESS"); n != float64(load.jobs+1) {
		t.Fatalf("%v exports IN_PROGRESS before the kill, want %d and the blocker (the exports are too short for this machine?)", n, load.jobs)
	}
	rdb := redis.NewClient(&redis.Options{Addr: rs.Addr()})
	defer func() { _ = rdb.Close() }()
	pending, err := rdb.XPending(t.Context(), "exportstream:queue", "workers").Result()
	if err != nil {
		t.Fatal(err)
	}
	byReplica := map[string]int64{}
	for consumer, n := range pending.Consumers { // "<host>-<pid>-<random>"
		switch {
		case strings.Contains(consumer, fmt.Sprintf("-%d-", a.Pid())):
			byReplica["A"] += n
		case strings.Contains(consumer, fmt.Sprintf("-%d-", b.Pid())):
			byReplica["B"] += n
		default:
			byReplica[consumer] += n
		}
	}
	if byReplica["A"] != 1 || byReplica["B"] != int64(load.jobs) || len(byReplica) != 2 {
		t.Fatalf("exports running by replica %v, want A 1 (the blocker) and B %d", byReplica, load.jobs)
	}
	stack.CheckMetric(t, aURL, "exportstream_backend_mux_streams_open", 1)
	stack.CheckMetric(t, aURL, "exportstream_backend_mux_subscriptions_active", float64(load.jobs))
	stack.CheckMetric(t, bURL, "exportstream_backend_mux_streams_open", 0)

	killed := kill9AndRestart(t, a)
	run.finish(t, killed, 40*time.Second)
	// B generated all of them (A's queue entry is the blocker's alone, and
	// a dead replica's entries wait 30 s before another takes them).
	stack.CheckMetric(t, bURL, `exportstream_backend_generation_duration_seconds_count{status="COMPLETED"}`, float64(load.jobs))
	stack.CheckMetric(t, aURL, "exportstream_backend_mux_streams_open", 1)
	stack.CheckMetric(t, aURL, "exportstream_backend_mux_streams_opened_total", 1)
	stack.CheckMetric(t, aURL, "exportstream_backend_mux_subscribed_total", float64(load.jobs))
	stack.CheckMetric(t, bURL, "exportstream_backend_mux_streams_opened_total", 0)
}

// checkAllCompleted: the backend holds n exports, every one COMPLETED, none
// stuck or failed.
func checkAllCompleted(t *testing.T, backendURL string, n int) {
	t.Helper()
	for _, status := range []string{"PENDING", "IN_PROGRESS", "FAILED", "CANCELLED"} {
		if got := backendJobs(t, backendURL, status); got != 0 {
			t.Errorf("%v exports %s after the run, want 0", got, status)
		}
	}
	if got := backendJobs(t, backendURL, "COMPLETED"); got != float64(n) {
		t.Errorf("%v exports COMPLETED, want %d", got, n)
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

// backendJobs reads how many jobs the backend holds in status, from /metrics
// (a status no job has is not reported: 0).
func backendJobs(t *testing.T, backendURL, status string) float64 {
	t.Helper()
	return stack.MetricOr0(t, backendURL, `exportstream_backend_jobs{status="`+status+`"}`)
}

// expectedSHA256Of recomputes the files' checksums, concurrently.
func expectedSHA256Of(codes []string, rows int) map[string]string {
	var mu sync.Mutex
	out := make(map[string]string, len(codes))
	var wg sync.WaitGroup
	for _, code := range codes {
		wg.Go(func() {
			sum := stack.ExpectedSHA256(code, rows)
			mu.Lock()
			defer mu.Unlock()
			out[code] = sum
		})
	}
	wg.Wait()
	return out
}
