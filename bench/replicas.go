package main

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/exportstream/exportstream/internal/testenv"

	"github.com/exportstream/exportstream/e2e/stack"
	"github.com/exportstream/exportstream/internal/redistest"
)

// The replicas scenario: the scaled-out stack, redis-server + N
// backends on it + N BFFs (BFF i in front of backend i, one session
// secret), for N = 1, 2, 4. Each job is created through the next BFF in
// its own session; its subscribers are spread over the BFFs. Every BFF
// holds one multiplexed upstream to its backend, whatever the jobs: N in
// all. Same gating as the other delivery scenarios: the
// measured jobs wait PENDING behind blocker jobs until every subscriber is
// connected, so every one of their events is measured.

type replicaSizes struct {
	counts                     []int
	jobs, subs, rows, duration int // duration in ms
}

func replicaSizesOf(size string) replicaSizes {
	switch size {
	case "smoke":
		return replicaSizes{counts: []int{2}, jobs: 2, subs: 2, rows: 5, duration: 500}
	case "full":
		// 4,000 subscribers of 400 jobs at 10 events/s (~40,400
		// deliveries/s offered), near what one BFF + backend serve on 2
		// cores.
		return replicaSizes{counts: []int{1, 2, 4}, jobs: 400, subs: 10, rows: 100, duration: 10_000}
	default: // short
		// ~4,000 deliveries/s offered (10 events/s), within one replica's reach: the
		// latency and cost of each N at the same load, in ~25 s.
		return replicaSizes{counts: []int{1, 2, 4}, jobs: 40, subs: 10, rows: 50, duration: 5000}
	}
}

// redisServer runs redis-server on a free loopback port, without
// persistence (the delivery path is measured, not fsync; the other delivery
// scenarios run the backend in memory too), until stop.
func redisServer(ctx context.Context, name, logDir string) (*server, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(logDir, name+"-")
	if err != nil {
		return nil, err
	}
	s, err := startProbed(ctx, name, logDir, stack.Cmd{Path: bin, Probe: redistest.Ping,
		Args: []string{"--port", "{port}", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
			"--dir", dir, "--daemonize", "no", "--loglevel", "warning"}})
	if err != nil {
		return nil, err
	}
	s.url = "redis://" + s.Addr + "/0"
	return s, nil
}

func scenarioReplicas(ctx context.Context, e *env) (*Scenario, error) {
	sz := e.size.replicas
	s := &Scenario{
		Name: fmt.Sprintf("replicas: scaled out on Redis, %s replicas of each service", joinInts(sz.counts)),
		Setup: fmt.Sprintf("redis-server (no persistence) + N backends on it (`-redis-url`, one shared files directory, one worker per measured job in all) + N BFFs "+
			"(BFF i in front of backend i, one session secret), on this one machine. %d jobs × %d subscribers, %d rows over %d ms (%s per job); "+
			"job k is created through BFF k mod N in its own session, its subscribers are spread over the BFFs round-robin. "+
			"Latency = receipt − the job's updatedAt (set by whichever replica generated it; same clock). "+
			"upstream conns = event streams the backends had open with every subscriber connected (expected: one per BFF). "+
			"CPU µs/delivery: all BFFs together, and every server process (BFFs, backends, Redis) together; "+
			"CPU %% = of one core, mean per BFF or backend replica over the run; the load generator (this process) shares the same %d cores.",
			sz.jobs, sz.subs, sz.rows, sz.duration, eventRate(sz.rows, sz.duration), runtime.NumCPU()),
		Columns: []string{"p50 ms", "p99 ms", "max ms", "received/s", "upstream conns", "expected upstreams",
			"BFF CPU µs/delivery", "all CPU µs/delivery", "CPU % per BFF", "CPU % per backend", "Redis CPU %", "load gen CPU %", "errors", "reconnects"},
		Baseline: "1 replica",
		curves:   map[string]latencies{},
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		msg := "MISSING COMPONENT: redis-server (apt-get install redis-server, or scripts/install-test-deps.sh as root); the replicas scenario is NOT run"
		if testenv.InCI() {
			return nil, fmt.Errorf("%s", msg)
		}
		bar := strings.Repeat("!", 72)
		fmt.Fprintf(os.Stderr, "\n%s\n%s\n%s\n", bar, msg, bar)
		s.Verdicts = append(s.Verdicts, "skipped: redis-server missing")
		return s, nil
	}
	upstreamsHeld := true
	for _, n := range ordered(e, sz.counts) {
		name := fmt.Sprintf("%d replicas", n)
		if n == 1 {
			name = "1 replica"
		}
		row, lat, err := runReplicas(ctx, e, n, sz)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		row.Target = name
		s.Rows = append(s.Rows, row)
		s.curves[name] = lat
		m := row.Metrics
		if m["upstream conns"] != m["expected upstreams"] {
			upstreamsHeld = false
		}
		logf("  %s: p50 %.2f ms p99 %.2f ms, %.0f deliveries/s, %v upstreams, %v errors", name, m["p50 ms"], m["p99 ms"], m["received/s"], m["upstream conns"], m["errors"])
	}
	verdict := "one multiplexed upstream per BFF, at every N: "
	if upstreamsHeld {
		verdict += "met"
	} else {
		verdict += "MISSED (see upstream conns vs expected)"
	}
	s.Verdicts = append(s.Verdicts, verdict)
	return s, nil
}

// runReplicas starts the stack with n replicas, runs the load and stops it.
func runReplicas(ctx context.Context, e *env, n int, sz replicaSizes) (*Row, latencies, error) {
	st := &replicaStack{n: n}
	defer st.stop()
	if err := st.start(ctx, e, sz.jobs); err != nil {
		return nil, nil, err
	}
	c := newHTTPClient(nil)
	blockers, err := st.blockers(ctx, c)
	if err != nil {
		return nil, nil, err
	}
	defer cancelAll(context.WithoutCancel(ctx), c, st.backends, blockers) // the second DELETE deletes
	req := createReq{Rows: sz.rows, DurationMs: sz.duration}
	jobs := make([]job, sz.jobs)
	for k := range jobs {
		t := target{kind: kindBFF, url: st.bffs[k%n].url}
		if jobs[k], err = create(ctx, c, t, req, ""); err != nil {
			return nil, nil, err
		}
	}

	mon := watch(250*time.Millisecond, st.procs...)
	self, _ := stack.SampleProc(os.Getpid())
	deadline := time.Duration(sz.duration)*time.Millisecond + 30*time.Second + gateTimeout
	subs := watchCrowd(ctx, sz.jobs*sz.subs, deadline, func(i int) (target, job) {
		k, sub := i/sz.subs, i%sz.subs
		return target{kind: kindBFF, url: st.bffs[(k+sub)%n].url}, jobs[k]
	})
	subs.waitConnected(ctx, deadline)
	upstreams := 0.0 // with every subscriber connected
	for _, be := range st.backends {
		upstreams += upstreamsOpen(c, be.url)
	}
	cancelAll(ctx, c, st.backends, blockers)
	subs.wait()
	use := mon.stop()
	selfEnd, _ := stack.SampleProc(os.Getpid())
	t := subs.tally()
	lat := t.lat.sorted()
	m := st.metrics(t, lat, use)
	m["upstream conns"] = upstreams
	if wall := selfEnd.At.Sub(self.At).Seconds(); wall > 0 {
		m["load gen CPU %"] = 100 * float64(selfEnd.CPUTick-self.CPUTick) / stack.ClockTicks / wall
	}
	row := &Row{Metrics: m, Usage: use}
	if t.unfinished > 0 {
		row.Notes = append(row.Notes, fmt.Sprintf("%d subscribers did not see their terminal event", t.unfinished))
	}
	return row, lat, nil
}

// replicaStack is the scaled-out stack of n replicas: Redis, the backends
// on it, a BFF in front of each.
type replicaStack struct {
	n              int
	procs          []*server // in the order started
	backends, bffs []*server
	perBackend     int // workers per backend
}

// start starts Redis, then n backends with enough workers for the measured
// jobs in all, then n BFFs, BFF i in front of backend i.
func (st *replicaStack) start(ctx context.Context, e *env, jobs int) error {
	tag := fmt.Sprintf("replicas%d", st.n)
	rs, err := redisServer(ctx, tag+"-redis", e.logDir)
	if err != nil {
		return err
	}
	st.procs = append(st.procs, rs)
	files, err := os.MkdirTemp(e.logDir, tag+"-files-")
	if err != nil {
		return err
	}
	st.perBackend = (jobs + st.n - 1) / st.n
	for i := range st.n {
		be, err := e.backend(ctx, fmt.Sprintf("%s-backend%d", tag, i+1), st.perBackend,
			"-data-dir", files, "-redis-url", rs.url, "-disk-reserve", "0")
		if err != nil {
			return err
		}
		st.procs = append(st.procs, be)
		st.backends = append(st.backends, be)
	}
	for i := range st.n {
		bff, err := e.bff(ctx, fmt.Sprintf("%s-bff%d", tag, i+1), st.backends[i].url)
		if err != nil {
			return err
		}
		st.procs = append(st.procs, bff)
		st.bffs = append(st.bffs, bff)
	}
	return nil
}

// stop stops the front first: the BFFs, then the backends (they hand jobs
// back to Redis), then Redis.
func (st *replicaStack) stop() {
	for i := len(st.procs) - 1; i >= 0; i-- {
		st.procs[i].stop()
	}
}

// blockers creates one blocker job per worker, round-robin over the
// backends, on the shared queue: they are taken first (it is FIFO) and
// occupy every worker until the subscribers are connected. A replica
// learns that a job it runs was cancelled through another only at the
// job's next progress report, i.e. its next whole percent, so the
// blockers last 10 s (a percent per 100 ms): blockers of 90 s, as
// elsewhere, would start half the measured jobs 0.7–0.9 s late at N ≥ 2.
// Subscribers still connecting after 10 s miss the first events, which
// are then not measured (as everywhere, only events after the last
// subscriber connected count).
func (st *replicaStack) blockers(ctx context.Context, c *http.Client) ([]job, error) {
	var blockers []job
	for i := range st.perBackend * st.n {
		be := st.backends[i%st.n]
		bt := target{kind: kindBackend, url: be.url, backend: be.url}
		j, err := create(ctx, c, bt, createReq{Rows: 100, DurationMs: 10_000}, "")
		if err != nil {
			return nil, fmt.Errorf("blocker: %w", err)
		}
		blockers = append(blockers, j)
	}
	return blockers, nil
}

// metrics are the row's latencies, rates and CPU: the BFFs' and all
// processes' per delivery, and the mean per BFF and per backend.
func (st *replicaStack) metrics(t tally, lat latencies, use map[string]usage) map[string]float64 {
	m := map[string]float64{
		"p50 ms": lat.pct(50), "p99 ms": lat.pct(99), "max ms": lat.pct(100),
		"deliveries": float64(len(lat)), "received/s": math.NaN(),
		"expected upstreams": float64(st.n),
		"errors":             float64(t.errors), "reconnects": float64(t.reconnects),
		"BFF CPU µs/delivery": math.NaN(), "all CPU µs/delivery": math.NaN(),
	}
	if t.last > t.first {
		m["received/s"] = float64(len(lat)) / (float64(t.last-t.first) / 1e9)
	}
	var bffCPU, allCPU, bffPct, bePct float64
	for _, p := range st.procs {
		u := use[p.name]
		allCPU += u.CPUSeconds
		switch {
		case strings.Contains(p.name, "-bff"):
			bffCPU += u.CPUSeconds
			bffPct += u.CPUPercent / float64(st.n)
		case strings.Contains(p.name, "-backend"):
			bePct += u.CPUPercent / float64(st.n)
		default:
			m["Redis CPU %"] = u.CPUPercent
		}
	}
	m["CPU % per BFF"], m["CPU % per backend"] = bffPct, bePct
	// Below 0.2 s the 100 Hz tick of /proc makes the figure noise.
	if len(lat) > 0 && bffCPU >= 0.2 {
		m["BFF CPU µs/delivery"] = bffCPU * 1e6 / float64(len(lat))
		m["all CPU µs/delivery"] = allCPU * 1e6 / float64(len(lat))
	}
	return m
}

// cancelAll cancels jobs 32 at a time, spread over the backends: one after
// another, 400 blockers take 11–16 s to cancel under this load, and the
// measured jobs would start over that long instead of at once.
func cancelAll(ctx context.Context, c *http.Client, backends []*server, jobs []job) {
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	for i, j := range jobs {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			cancelJobs(ctx, c, backends[i%len(backends)].url, []job{j})
		}()
	}
	wg.Wait()
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ", ")
}
