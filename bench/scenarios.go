package main

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/exportstream/exportstream/e2e/stack"
)

// env is what every scenario needs: where the binaries are and where logs go.
type env struct {
	binDir, logDir, staticDir string
	baselineDir               string
	node                      bool // node and the baseline's node_modules are there
	size                      sizes
	reverse                   bool // run the variants of each comparison in reverse order (ordered)
}

const sessionSecret = "bench-session-secret-0123456789abcdef"

// backend starts the backend in memory (unless extra has -data-dir) with
// workers exports generated at once.
func (e *env) backend(ctx context.Context, name string, workers int, extra ...string) (*server, error) {
	return e.backendProfiled(ctx, name, false, workers, extra...)
}

// backendProfiled is backend, serving pprof when profile is set and
// BENCH_BACKEND_PPROF names an address.
func (e *env) backendProfiled(ctx context.Context, name string, profile bool, workers int, extra ...string) (*server, error) {
	args := []string{filepath.Join(e.binDir, "backend"), "-addr", "{addr}", "-workers", strconv.Itoa(workers), "-queue-size", "1000000",
		"-max-active-per-owner", "0", "-retention", "1h", "-log-level", "warn"}
	if !slices.Contains(extra, "-data-dir") {
		args = append(args, "-memory")
	}
	return start(ctx, name, e.logDir, backendEnv(profile), append(args, extra...)...)
}

func (e *env) bff(ctx context.Context, name, backendURL string, extra ...string) (*server, error) {
	args := []string{filepath.Join(e.binDir, "bff"), "-addr", "{addr}", "-backend-url", backendURL, "-static-dir", e.staticDir,
		"-session-secret", sessionSecret, "-max-streams-per-session", "100000", "-max-streams", "100000",
		"-create-rate", "0", "-address-session-rate", "0", "-address-create-rate", "0", "-max-streams-per-address", "0",
		"-log-level", "warn"}
	return start(ctx, name, e.logDir, bffEnv(), append(args, extra...)...)
}

func (e *env) express(ctx context.Context, name, backendURL string) (*server, error) {
	return start(ctx, name, e.logDir, []string{"PORT={port}", "BACKEND_URL=" + backendURL},
		"node", filepath.Join(e.baselineDir, "relay.mjs"))
}

// relayed is a backend and a BFF in front of it.
type relayed struct{ be, bff *server }

// relayed starts name-backend (as backend, with workers) and name-bff in
// front of it, with bffExtra flags.
func (e *env) relayed(ctx context.Context, name string, workers int, bffExtra ...string) (relayed, error) {
	be, err := e.backend(ctx, name+"-backend", workers)
	if err != nil {
		return relayed{}, err
	}
	bff, err := e.bff(ctx, name+"-bff", be.url, bffExtra...)
	if err != nil {
		be.stop()
		return relayed{}, err
	}
	return relayed{be: be, bff: bff}, nil
}

// stop stops the BFF, then the backend.
func (r relayed) stop() {
	r.bff.stop()
	r.be.stop()
}

// oneJob is the phase of subs subscribers of one job in one session
// through the BFF, and stalled more that never read.
func (r relayed) oneJob(subs, stalled int, req createReq) phase {
	return phase{t: target{name: "BFF", kind: kindBFF, url: r.bff.url, backend: r.be.url}, jobs: 1, subsPerJob: subs, req: req, sameOwner: true,
		monitor: []*server{r.be, r.bff}, relay: r.bff, backend: r.be, gated: true, stalled: stalled}
}

// metric reads one unlabelled counter or gauge from a /metrics page (NaN
// when it cannot).
func metric(c *http.Client, url, name string) float64 {
	v, ok, err := stack.ReadMetric(context.Background(), c, url, name)
	if err != nil || !ok {
		return math.NaN()
	}
	return v
}

// upstreamsOpen is how many event streams the backend has open: its
// per-job streams (a browser reading it directly, the seed's relay, one
// each) and its multiplexed ones (the BFF's upstream, one per BFF).
func upstreamsOpen(c *http.Client, url string) float64 {
	return metric(c, url, "exportstream_backend_event_streams_active") +
		metric(c, url, "exportstream_backend_mux_streams_open")
}

// eventRate is how often a job of rows over durationMs reports progress.
func eventRate(rows, durationMs int) string {
	_, interval := progressEvents(rows, durationMs)
	return fmt.Sprintf("≈%.0f events/s", float64(time.Second)/float64(interval))
}

// progressEvents is how many progress events a job of rows over
// durationMs makes and how far apart: the backend writes it in chunks of
// ≥ 50 ms and reports a chunk when its deadline is one -progress-interval
// (100 ms by default) after the last reported one's and the whole percent
// moved.
func progressEvents(rows, durationMs int) (int, time.Duration) {
	chunks := min(max(durationMs/50, rows/50_000, 1), rows)
	chunkMs := float64(durationMs) / float64(chunks)
	per := max(math.Ceil(100/chunkMs), math.Ceil(float64(chunks)/100), 1) // chunks per event
	interval := time.Duration(per * chunkMs * float64(time.Millisecond))
	return max(int(float64(durationMs)/(per*chunkMs)), 1), interval
}

// ordered is vs, reversed on the runs that alternate the order (-runs):
// whichever variant runs first meets a cooler machine.
func ordered[T any](e *env, vs []T) []T {
	if !e.reverse {
		return vs
	}
	r := slices.Clone(vs)
	slices.Reverse(r)
	return r
}

// relayStagger spreads jobs' starts evenly over one progress interval.
func relayStagger(rows, durationMs, jobs int) time.Duration {
	_, interval := progressEvents(rows, durationMs)
	return interval / time.Duration(max(jobs, 1))
}

// phase is one load of subscribers on jobs against one target.
type phase struct {
	t          target
	jobs       int
	subsPerJob int
	req        createReq
	sameOwner  bool // all jobs in one BFF session
	monitor    []*server
	relay      *server // the process whose CPU is per delivery (nil: the backend)
	backend    *server
	// gated: the backend runs exactly jobs workers; as many long blocker
	// jobs are created first, so the measured jobs wait PENDING until every
	// subscriber is connected and the blockers are cancelled. Every event
	// of the measured jobs is then measured.
	gated bool
	// stalled subscribers open their streams first and never read them.
	stalled int
	// stagger spaces the blockers' cancellations, so the measured jobs
	// start this far apart instead of ticking together.
	stagger time.Duration
	// plain: t is the floor server (plain.go): nothing is created, its
	// streams start when every subscriber is connected.
	plain bool
}

const gateTimeout = 90 * time.Second

func (p phase) blockers(ctx context.Context, c *http.Client) ([]job, error) {
	if !p.gated {
		return nil, nil
	}
	bt := target{kind: kindBackend, url: p.backend.url, backend: p.backend.url}
	var out []job
	for range p.jobs {
		j, err := create(ctx, c, bt, createReq{Rows: 100, DurationMs: int(gateTimeout / time.Millisecond)}, "")
		if err != nil {
			return nil, fmt.Errorf("blocker: %w", err)
		}
		out = append(out, j)
	}
	return out, nil
}

func cancelJobs(ctx context.Context, c *http.Client, backendURL string, jobs []job) {
	for _, j := range jobs {
		req, err := http.NewRequestWithContext(ctx, http.MethodDelete, backendURL+"/v1/exports/"+j.code, nil)
		if err != nil {
			continue
		}
		if resp, err := c.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
		}
	}
}

// releaseBlockers cancels the blockers, stagger apart (all at once when 0),
// which lets the measured jobs waiting behind them start.
func releaseBlockers(ctx context.Context, c *http.Client, backendURL string, blockers []job, stagger time.Duration) {
	if stagger <= 0 {
		cancelJobs(ctx, c, backendURL, blockers)
		return
	}
	t := time.NewTicker(stagger)
	defer t.Stop()
	for i, b := range blockers {
		if i > 0 {
			select {
			case <-t.C:
			case <-ctx.Done():
				return
			}
		}
		cancelJobs(ctx, c, backendURL, []job{b})
	}
}

// phaseResult is what a phase measured.
type phaseResult struct {
	lat            latencies // sorted, µs, events emitted after every subscriber was connected
	deliveries     int
	perSubMin      int
	perSubMax      int
	errors         int
	reconnects     int
	unfinished     int
	upstreams      float64 // backend event streams open with every subscriber connected
	seconds        float64 // first measured receipt → last
	steadyRate     float64 // deliveries received per second, the median whole second between the first receipt and the last
	usage          map[string]usage
	connectSeconds float64
	loadgenCPU     float64 // seconds of CPU the harness itself used (it shares the cores)
	// pressure: the share of the phase (%) during which some runnable
	// thread of the machine waited for a core (PSI); NaN without PSI.
	pressure float64
}

// run creates the jobs, connects every subscriber (at most 256 connecting
// at once), and records until every subscriber has its terminal event or
// the deadline passes.
func (p phase) run(ctx context.Context) (phaseResult, error) {
	c := newHTTPClient(nil)
	blockers, err := p.blockers(ctx, c)
	if err != nil {
		return phaseResult{}, err
	}
	defer cancelJobs(context.WithoutCancel(ctx), c, p.backend.url, blockers)
	jobs, cookie, err := p.createJobs(ctx, c)
	if err != nil {
		return phaseResult{}, err
	}
	stalled, err := p.openStalled(ctx, jobs, cookie)
	defer closeConns(stalled)
	if err != nil {
		return phaseResult{}, err
	}

	cpu0 := selfCPU()
	pressure0, psi := cpuPressure()
	began := time.Now()
	mon := watch(250*time.Millisecond, p.monitor...)
	startConnect := time.Now()
	deadline := time.Duration(p.req.DurationMs)*time.Millisecond + 30*time.Second
	if p.gated {
		deadline += gateTimeout
	}
	subCtx, cancelSubs := context.WithCancel(ctx)
	defer cancelSubs()
	subs := watchCrowd(subCtx, p.jobs*p.subsPerJob, deadline, func(i int) (target, job) { return p.t, jobs[i%p.jobs] })
	subs.waitConnected(ctx, deadline)
	connectSeconds := time.Since(startConnect).Seconds()
	upstreams := upstreamsOpen(c, p.backend.url) // every subscriber connected
	releaseBlockers(ctx, c, p.backend.url, blockers, p.stagger)
	if p.plain {
		if err := releasePlain(ctx, c, p.t.url); err != nil {
			cancelSubs()
			subs.wait()
			return phaseResult{}, err
		}
	}
	subs.wait()
	res := phaseResult{usage: mon.stop(), connectSeconds: connectSeconds, loadgenCPU: (selfCPU() - cpu0).Seconds(), pressure: math.NaN()}
	if pressure1, ok := cpuPressure(); ok && psi {
		res.pressure = 100 * (pressure1 - pressure0).Seconds() / time.Since(began).Seconds()
	}
	res.upstreams = upstreams
	t := subs.tally()
	res.errors, res.reconnects, res.unfinished = t.errors, t.reconnects, t.unfinished
	res.perSubMin, res.perSubMax = t.perSubMin, t.perSubMax
	res.deliveries = len(t.lat)
	res.lat = t.lat.sorted()
	if t.last > t.first {
		res.seconds = float64(t.last-t.first) / 1e9
	}
	res.steadyRate = steadyRate(t.received, t.first)
	return res, nil
}

// createJobs creates the phase's jobs, at most 32 at once, all in one BFF
// session (its cookie returned) when sameOwner. The floor server's jobs
// are only named.
func (p phase) createJobs(ctx context.Context, c *http.Client) ([]job, string, error) {
	jobs := make([]job, p.jobs)
	if p.plain {
		for i := range jobs {
			jobs[i].code = fmt.Sprintf("plain-%d", i)
		}
		return jobs, "", nil
	}
	var cookie string
	if p.sameOwner && p.t.kind == kindBFF {
		j, err := create(ctx, c, p.t, p.req, "")
		if err != nil {
			return nil, "", err
		}
		jobs[0], cookie = j, j.cookie
	}
	var firstErr firstError
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for i := range jobs {
		if jobs[i].code != "" {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			j, err := create(ctx, c, p.t, p.req, cookie)
			firstErr.set(err)
			jobs[i] = j
		}()
	}
	wg.Wait()
	return jobs, cookie, firstErr.get()
}

// firstError is the first error that concurrent workers report.
type firstError struct {
	mu  sync.Mutex
	err error
}

// set records err if it is the first (nil is no error).
func (f *firstError) set(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = cmp.Or(f.err, err)
}

func (f *firstError) get() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

// openStalled opens the phase's never-reading subscribers, round-robin
// over jobs; on an error it returns those it opened, for the caller to close.
func (p phase) openStalled(ctx context.Context, jobs []job, cookie string) ([]net.Conn, error) {
	header := ""
	if cookie != "" {
		header = "Cookie: " + cookie + "\r\n"
	}
	var conns []net.Conn
	for i := range p.stalled {
		conn, err := openStalled(ctx, eventsURL(p.t, jobs[i%p.jobs].code), header)
		if err != nil {
			return conns, fmt.Errorf("a never-reading subscriber: %w", err)
		}
		conns = append(conns, conn)
	}
	return conns, nil
}

func closeConns(conns []net.Conn) {
	for _, c := range conns {
		_ = c.Close()
	}
}

// steadyRate is the median of the deliveries received in each whole
// second after first, leaving out the last, partial one: the rate held
// while every job runs, which the mean over first → last dilutes with the
// ramps of jobs starting and ending a little apart. Binned by receipt, not
// emission: a relay that falls behind shows a lower rate here, where
// emission times would show the offered rate for every event that arrives
// in the end.
func steadyRate(received []int64, first int64) float64 {
	var perSecond []int
	for _, t := range received {
		s := int((t - first) / int64(time.Second))
		for len(perSecond) <= s {
			perSecond = append(perSecond, 0)
		}
		perSecond[s]++
	}
	if len(perSecond) < 2 {
		return math.NaN()
	}
	whole := perSecond[:len(perSecond)-1]
	slices.Sort(whole)
	return float64(whole[len(whole)/2])
}

// sharedClients: subscribers share a few transports (each stream still
// has its own connection).
var (
	sharedOnce sync.Once
	shared     []*http.Client
	sharedNext atomic.Uint64
)

func newSharedClient() *http.Client {
	sharedOnce.Do(func() {
		for range 16 {
			shared = append(shared, newHTTPClient(nil))
		}
	})
	return shared[sharedNext.Add(1)%uint64(len(shared))]
}

func (r phaseResult) row(name string, relay, backend *server) *Row {
	m := map[string]float64{
		"p50 ms":          r.lat.pct(50),
		"p99 ms":          r.lat.pct(99),
		"max ms":          r.lat.pct(100),
		"deliveries":      float64(r.deliveries),
		"received/s":      math.NaN(),
		"upstream conns":  r.upstreams,
		"errors":          float64(r.errors),
		"reconnects":      float64(r.reconnects),
		"events/sub min":  float64(r.perSubMin),
		"events/sub max":  float64(r.perSubMax),
		"connect s":       r.connectSeconds,
		"relay CPU s":     math.NaN(),
		"CPU µs/delivery": math.NaN(),
		"relay RSS MiB":   math.NaN(),
		"loadgen CPU s":   r.loadgenCPU,
		"CPU pressure %":  r.pressure,
	}
	if r.seconds > 0 {
		m["received/s"] = float64(r.deliveries) / r.seconds
	}
	m["steady received/s"] = r.steadyRate
	proc := backend
	if relay != nil {
		proc = relay
	}
	if u, ok := r.usage[proc.name]; ok {
		m["relay CPU s"] = u.CPUSeconds
		m["relay RSS MiB"] = float64(u.RSSPeakKiB) / 1024
		// Below 0.2 s the 100 Hz tick of /proc makes the figure noise.
		if r.deliveries > 0 && u.CPUSeconds >= 0.2 {
			m["CPU µs/delivery"] = u.CPUSeconds * 1e6 / float64(r.deliveries)
		}
	}
	if u, ok := r.usage[backend.name]; ok && relay != nil {
		m["backend CPU s"] = u.CPUSeconds
	}
	if u, ok := r.usage[proc.name]; ok {
		m["relay waited ms/s"] = u.WaitedMsPerS
	}
	if u, ok := r.usage[backend.name]; ok && relay != nil {
		m["backend waited ms/s"] = u.WaitedMsPerS
	}
	row := &Row{Target: name, Metrics: m, Usage: r.usage}
	if r.unfinished > 0 {
		row.Notes = append(row.Notes, fmt.Sprintf("%d subscribers did not see their terminal event", r.unfinished))
	}
	return row
}

// scenarioRelay: 1,000 subscribers on 10 codes, 10 events/s, through the
// BFF, the BFF without coalescing (the seed's design), the seed's Express
// relay, and the backend directly.
func scenarioRelay(ctx context.Context, e *env) (*Scenario, error) {
	sz := e.size.relay
	s := &Scenario{
		Name: "relay: subscribers on a few codes, 10 events/s",
		Setup: fmt.Sprintf("%d subscribers on %d codes (%d each), jobs of %d rows over %d ms (%s), started %s apart as independent exports would be; "+
			"latency = receipt − the job's updatedAt (backend clock, same machine), only events emitted after every subscriber was connected. "+
			"CPU µs/delivery = the relay process's CPU (the backend's for \"backend direct\") / deliveries.",
			sz.jobs*sz.subs, sz.jobs, sz.subs, sz.rows, sz.durationMs, eventRate(sz.rows, sz.durationMs), relayStagger(sz.rows, sz.durationMs, sz.jobs)),
		Columns:  []string{"p50 ms", "p99 ms", "max ms", "received/s", "upstream conns", "CPU µs/delivery", "relay RSS MiB", "errors", "reconnects"},
		Baseline: "BFF (this project)",
		curves:   map[string]latencies{},
	}
	be, err := e.backend(ctx, "relay-backend", sz.jobs)
	if err != nil {
		return nil, err
	}
	defer be.stop()
	req := createReq{Rows: sz.rows, DurationMs: sz.durationMs}
	type variant struct {
		name  string
		start func() (*server, error)
		kind  kind
	}
	variants := []variant{
		{"BFF (this project)", func() (*server, error) { return e.bff(ctx, "relay-bff", be.url) }, kindBFF},
		{"Express relay (seed)", func() (*server, error) { return e.express(ctx, "relay-express", be.url) }, kindExpress},
		{"backend direct", nil, kindBackend},
	}
	for _, v := range ordered(e, variants) {
		if v.kind == kindExpress && !e.node {
			s.Verdicts = append(s.Verdicts, "Express baseline skipped: node or bench/baselines/node_modules missing")
			continue
		}
		var relay *server
		t := target{name: v.name, kind: v.kind, url: be.url, backend: be.url}
		if v.start != nil {
			relay, err = v.start()
			if err != nil {
				return nil, err
			}
			t.url = relay.url
		}
		res, err := phase{t: t, jobs: sz.jobs, subsPerJob: sz.subs, req: req, sameOwner: true,
			monitor: []*server{be, relay}, relay: relay, backend: be, gated: true, stagger: relayStagger(sz.rows, sz.durationMs, sz.jobs)}.run(ctx)
		relay.stop()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", v.name, err)
		}
		s.Rows = append(s.Rows, res.row(v.name, relay, be))
		s.curves[v.name] = res.lat
		logf("  %s: p50 %.2f ms p99 %.2f ms, %d deliveries, %d errors", v.name, res.lat.pct(50), res.lat.pct(99), res.deliveries, res.errors)
	}
	return s, nil
}

// scenarioFanOut: many subscribers of one job through the BFF.
func scenarioFanOut(ctx context.Context, e *env) (*Scenario, error) {
	sz := e.size.fanout
	s := &Scenario{
		Name: "fan-out: subscribers on one job, 10 events/s",
		Setup: fmt.Sprintf("%d subscribers of one job (one session), %d rows over %d ms (%s); latency as above.",
			sz.subs, sz.rows, sz.durationMs, eventRate(sz.rows, sz.durationMs)),
		Columns: []string{"p50 ms", "p99 ms", "max ms", "received/s", "events/sub min", "events/sub max", "upstream conns", "CPU µs/delivery", "relay CPU s", "loadgen CPU s", "relay RSS MiB", "errors", "connect s"},
		curves:  map[string]latencies{},
	}
	st, err := e.relayed(ctx, "fanout", 1)
	if err != nil {
		return nil, err
	}
	defer st.stop()
	go grabProfile("fanout-cpu.pprof", fmt.Sprintf("profile?seconds=%d", sz.durationMs/1000), time.Minute)
	res, err := st.oneJob(sz.subs, 0, createReq{Rows: sz.rows, DurationMs: sz.durationMs}).run(ctx)
	if err != nil {
		return nil, err
	}
	name := fmt.Sprintf("BFF, %d subscribers", sz.subs)
	s.Rows = append(s.Rows, res.row(name, st.bff, st.be))
	s.curves[name] = res.lat
	logf("  %s: p50 %.2f ms p99 %.2f ms, %d deliveries, %d errors", name, res.lat.pct(50), res.lat.pct(99), res.deliveries, res.errors)
	return s, nil
}

// spreadShape is one load of the spread scenario: jobs, each its own
// session, each watched by subs streams.
type spreadShape struct{ jobs, subs, rows, durationMs int }

func (sh spreadShape) name() string {
	if sh.subs == 1 {
		return fmt.Sprintf("%d users × 1 export, %s", sh.jobs, eventRate(sh.rows, sh.durationMs))
	}
	return fmt.Sprintf("%d exports × %d subscribers, %s", sh.jobs, sh.subs, eventRate(sh.rows, sh.durationMs))
}

// scenarioSpread: many jobs, each its own session, through the BFF; for
// the real shape (one stream per user) the same load on the plain Go
// server, the floor of this machine.
func scenarioSpread(ctx context.Context, e *env) (*Scenario, error) {
	s := &Scenario{
		Name: "spread: many users, each its own session and export",
		Setup: "each job created in its own BFF session and watched through the BFF by its subscribers (1 for the real shape); the jobs start a progress interval ÷ jobs apart, as independent exports do. " +
			"backend direct: the same jobs read on the backend's per-job streams (no relay). " +
			"floor: the same number of streams at the same rate from a plain net/http SSE server (bench plain-server: snapshots from memory, no store, no relay, each stream starting at a random point of one interval), read by the same subscribers. " +
			"received/s = deliveries / first receipt → last; steady = the median whole second between, binned by receipt time. " +
			"CPU pressure = the share of the phase during which some runnable thread of the machine waited for a core (the kernel's PSI); waited ms/s = how long a process's threads together were runnable but without a core, per second (schedstat run delay): the queueing that two shared cores add to each delivery.",
		Columns: []string{"p50 ms", "p99 ms", "max ms", "received/s", "steady received/s", "events/sub min", "events/sub max", "upstream conns", "CPU µs/delivery", "relay CPU s", "backend CPU s", "loadgen CPU s",
			"CPU pressure %", "relay waited ms/s", "backend waited ms/s", "relay RSS MiB", "errors", "connect s"},
		curves: map[string]latencies{},
	}
	type variant struct {
		shape spreadShape
		via   spreadVia
	}
	var variants []variant
	for _, sh := range e.size.spread {
		variants = append(variants, variant{sh, viaBFF})
		if sh.subs == 1 {
			variants = append(variants, variant{sh, viaBackend}, variant{sh, viaFloor})
		}
	}
	for _, v := range ordered(e, variants) {
		name := []string{"BFF, ", "backend direct, ", "floor: plain Go server, "}[v.via] + v.shape.name()
		res, relay, be, err := spreadPhase(ctx, e, v.shape, v.via)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		s.Rows = append(s.Rows, res.row(name, relay, be))
		s.curves[name] = res.lat
		logf("  %s: p50 %.2f ms p99 %.2f ms, %.0f received/s, %d errors", name, res.lat.pct(50), res.lat.pct(99), s.Rows[len(s.Rows)-1].Metrics["received/s"], res.errors)
	}
	return s, nil
}

// spreadVia is what the spread's subscribers read.
type spreadVia int

const (
	viaBFF     spreadVia = iota // the BFF in front of the backend
	viaBackend                  // the backend's per-job streams directly
	viaFloor                    // the plain Go server
)

// spreadPhase runs one shape on fresh processes. The jobs start a
// progress interval ÷ jobs apart, as independent exports do: the floor
// server starts its streams at random points of one interval.
func spreadPhase(ctx context.Context, e *env, sh spreadShape, via spreadVia) (phaseResult, *server, *server, error) {
	req := createReq{Rows: sh.rows, DurationMs: sh.durationMs}
	if via == viaFloor {
		events, interval := progressEvents(sh.rows, sh.durationMs)
		srv, err := e.plain(ctx, "spread-floor", events, interval)
		if err != nil {
			return phaseResult{}, nil, nil, err
		}
		defer srv.stop()
		t := target{name: "floor", kind: kindBackend, url: srv.url, backend: srv.url}
		res, err := phase{t: t, jobs: sh.jobs, subsPerJob: sh.subs, req: req, monitor: []*server{srv}, backend: srv, plain: true}.run(ctx)
		return res, nil, srv, err
	}
	be, err := e.backendProfiled(ctx, "spread-backend", true, sh.jobs)
	if err != nil {
		return phaseResult{}, nil, nil, err
	}
	defer be.stop()
	// With BENCH_BACKEND_PPROF: the backend's CPU while the jobs generate.
	go grabProfileFrom(backendPprofAddr, fmt.Sprintf("spread-%d-%d-backend-cpu.pprof", sh.jobs, via), fmt.Sprintf("profile?seconds=%d", sh.durationMs/1000), time.Minute)
	p := phase{jobs: sh.jobs, subsPerJob: sh.subs, req: req, backend: be, monitor: []*server{be}, gated: true,
		stagger: relayStagger(sh.rows, sh.durationMs, sh.jobs)}
	if via == viaBackend {
		p.t = target{name: "backend", kind: kindBackend, url: be.url, backend: be.url}
		res, err := p.run(ctx)
		return res, nil, be, err
	}
	bff, err := e.bff(ctx, "spread-bff", be.url)
	if err != nil {
		return phaseResult{}, nil, nil, err
	}
	defer bff.stop()
	// With BENCH_BFF_PPROF: the BFF's CPU while it relays.
	go grabProfile(fmt.Sprintf("spread-%d-bff-cpu.pprof", sh.jobs), fmt.Sprintf("profile?seconds=%d", sh.durationMs/1000), time.Minute)
	p.t = target{name: "BFF", kind: kindBFF, url: bff.url, backend: be.url}
	p.monitor, p.relay = append(p.monitor, bff), bff
	res, err := p.run(ctx)
	return res, bff, be, err
}

// scenarioOverhead: one subscriber through the BFF and one on the backend
// directly, reading the same job at the same time; the added latency is
// paired per event (same seq).
func scenarioOverhead(ctx context.Context, e *env) (*Scenario, error) {
	sz := e.size.overhead
	s := &Scenario{
		Name: "relay overhead: 1 subscriber, BFF vs backend direct",
		Setup: fmt.Sprintf("%d jobs one after another, each %d rows over %d ms, read at once by one subscriber through the BFF and one on the backend (same owner); "+
			"\"added\" is the BFF receipt − the direct receipt of the same event.", sz.jobs, sz.rows, sz.durationMs),
		Columns: []string{"p50 ms", "p99 ms", "max ms", "mean ms", "events"},
		curves:  map[string]latencies{},
	}
	c := newHTTPClient(nil)
	st, err := e.relayed(ctx, "overhead", 16)
	if err != nil {
		return nil, err
	}
	defer st.stop()
	tb := target{kind: kindBFF, url: st.bff.url, backend: st.be.url}
	td := target{kind: kindBackend, url: st.be.url, backend: st.be.url}
	var direct, viaBFF, added latencies
	errs := 0
	for range sz.jobs {
		j, err := create(ctx, c, tb, createReq{Rows: sz.rows, DurationMs: sz.durationMs}, "")
		if err != nil {
			return nil, err
		}
		if j.owner == "" {
			return nil, errors.New("cannot read the session id from the cookie to pair the direct reader")
		}
		var wg sync.WaitGroup
		var rd, rb subResult
		var t0 atomic.Int64
		ready := make(chan struct{}, 2)
		o := watchOpts{maxConns: 3, deadline: time.Duration(sz.durationMs)*time.Millisecond + 20*time.Second,
			connected: func() { ready <- struct{}{} }}
		wg.Add(2)
		go func() { defer wg.Done(); rd = subscribe(ctx, newHTTPClient(nil), td, j, o) }()
		go func() { defer wg.Done(); rb = subscribe(ctx, newHTTPClient(nil), tb, j, o) }()
		go func() { <-ready; <-ready; t0.Store(time.Now().UnixNano()) }()
		wg.Wait()
		if rd.err != nil || rb.err != nil {
			errs++
		}
		bySeq := map[int64]delivery{}
		for _, d := range rd.events {
			if d.updatedAt >= t0.Load() && t0.Load() != 0 {
				bySeq[d.seq] = d
				direct = append(direct, d.latencyUs)
			}
		}
		for _, d := range rb.events {
			if d.updatedAt >= t0.Load() && t0.Load() != 0 {
				viaBFF = append(viaBFF, d.latencyUs)
				if dd, ok := bySeq[d.seq]; ok {
					added = append(added, d.latencyUs-dd.latencyUs)
				}
			}
		}
	}
	for _, x := range []struct {
		name string
		l    latencies
	}{{"backend direct", direct}, {"BFF", viaBFF}, {"added by the BFF (paired)", added}} {
		l := x.l.sorted()
		s.Rows = append(s.Rows, &Row{Target: x.name, Metrics: map[string]float64{
			"p50 ms": l.pct(50), "p99 ms": l.pct(99), "max ms": l.pct(100), "mean ms": l.mean(), "events": float64(len(l)),
		}})
		if x.name != "added by the BFF (paired)" {
			s.curves[x.name] = l
		}
	}
	if errs > 0 {
		s.Rows[2].Notes = append(s.Rows[2].Notes, fmt.Sprintf("%d jobs had a stream error", errs))
	}
	a := added.sorted()
	logf("  added p50 %.3f ms p99 %.3f ms over %d events", a.pct(50), a.pct(99), len(a))
	return s, nil
}

// scenarioPolling: exports watched to completion by SSE through the BFF,
// then the same number by polling every 2 s (the flow SSE replaces).
func scenarioPolling(ctx context.Context, e *env) (*Scenario, error) {
	sz := e.size.polling
	s := &Scenario{
		Name: "polling vs SSE: exports watched to completion",
		Setup: fmt.Sprintf("%d exports of %d ms (%d rows) through the BFF, each watched by one client: first all by SSE (GET /api/exports/{code}/events), then %d new ones by polling GET /api/exports/{code} every 2 s from a random phase. "+
			"Bytes are both directions on the wire, headers included. Notice delay = the client has the terminal state − its updatedAt.", sz.exports, sz.durationMs, sz.rows, sz.exports),
		Columns:  []string{"requests/export", "bytes/export", "notice mean ms", "notice p99 ms", "BFF CPU ms/export", "errors"},
		Baseline: "SSE (this project)",
	}
	st, err := e.relayed(ctx, "polling", 4000)
	if err != nil {
		return nil, err
	}
	defer st.stop()
	be, bff := st.be, st.bff
	t := target{kind: kindBFF, url: bff.url, backend: be.url}
	for _, mode := range ordered(e, []string{"SSE (this project)", "polling every 2 s"}) {
		w := &wire{}
		c := newHTTPClient(w)
		mon := watch(250*time.Millisecond, be, bff)
		var mu sync.Mutex
		var notice latencies
		requests, errs := 0, 0
		var wg sync.WaitGroup
		for range sz.exports {
			j, err := create(ctx, c, t, createReq{Rows: sz.rows, DurationMs: sz.durationMs}, "")
			if err != nil {
				return nil, err
			}
			requests++ // the POST
			wg.Add(1)
			go func() {
				defer wg.Done()
				deadline := time.Duration(sz.durationMs)*time.Millisecond + 30*time.Second
				var d delivery
				var n int
				var err error
				if strings.HasPrefix(mode, "SSE") {
					r := subscribe(ctx, c, t, j, watchOpts{maxConns: 3, deadline: deadline})
					n, err = 1+r.reconnects, r.err
					if len(r.events) > 0 {
						d = r.events[len(r.events)-1]
					}
				} else {
					phase := time.Duration(rand.Int64N(int64(2 * time.Second)))
					d, n, err = poll(ctx, c, t, j, 2*time.Second, phase, deadline)
				}
				mu.Lock()
				defer mu.Unlock()
				requests += n
				if err != nil || !d.terminal {
					errs++
					return
				}
				notice = append(notice, d.latencyUs)
			}()
		}
		wg.Wait()
		u := mon.stop()
		l := notice.sorted()
		ex := float64(sz.exports)
		s.Rows = append(s.Rows, &Row{Target: mode, Usage: u, Metrics: map[string]float64{
			"requests/export":   float64(requests) / ex,
			"bytes/export":      float64(w.sent.Load()+w.received.Load()) / ex,
			"notice mean ms":    l.mean(),
			"notice p99 ms":     l.pct(99),
			"BFF CPU ms/export": u[bff.name].CPUSeconds * 1000 / ex,
			"errors":            float64(errs),
		}})
		logf("  %s: %.1f requests/export, %.0f bytes/export, notice mean %.1f ms p99 %.1f ms", mode, float64(requests)/ex,
			float64(w.sent.Load()+w.received.Load())/ex, l.mean(), l.pct(99))
	}
	return s, nil
}

// scenarioCreate: POST /v1/exports on the durable backend from concurrent clients.
func scenarioCreate(ctx context.Context, e *env) (*Scenario, error) {
	sz := e.size.create
	dir, err := os.MkdirTemp("", "exportstream-bench-data-")
	if err != nil {
		return nil, err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	s := &Scenario{
		Name: "create throughput: POST /v1/exports, durable store",
		Setup: fmt.Sprintf("%d concurrent clients POST {rows:1,durationMs:0} to the backend with -data-dir (bbolt, fsync) for %s; every job is queued for generation (as many workers as cores): generated/s and queued at end say how far generation kept up.",
			sz.clients, sz.duration),
		Columns: []string{"jobs/s", "p50 ms", "p99 ms", "max ms", "errors", "generated/s", "queued at end", "backend CPU µs/create", "loadgen CPU µs/create"},
	}
	be, err := e.backendProfiled(ctx, "create-backend", true, runtime.NumCPU(), "-data-dir", dir)
	if err != nil {
		return nil, err
	}
	defer be.stop()
	c := newHTTPClient(nil)
	mon := watch(250*time.Millisecond, be)
	// BENCH_CREATE_NETHTTP=1: the clients use net/http instead of
	// rawPoster, to compare what the load generator costs.
	netHTTP := os.Getenv("BENCH_CREATE_NETHTTP") == "1"
	load := &createLoad{url: be.url}
	if netHTTP {
		t := target{kind: kindBackend, url: be.url, backend: be.url}
		load.netHTTP = func(ctx context.Context) error {
			_, err := create(ctx, c, t, createReq{Rows: 1, DurationMs: 0}, "")
			return err
		}
	}
	cpu0 := selfCPU()
	load.stopAt = time.Now().Add(sz.duration)
	begin := time.Now()
	if backendPprofAddr != "" {
		// The CPU of the load, leaving its first and last half second out.
		secs := max(int(sz.duration/time.Second)-1, 1)
		go func() {
			time.Sleep(500 * time.Millisecond)
			grabProfileFrom(backendPprofAddr, "create-cpu.pprof", fmt.Sprintf("profile?seconds=%d", secs), time.Minute)
		}()
	}
	load.run(ctx, sz.clients)
	lat, errs := load.lat, load.errs
	secs := time.Since(begin).Seconds()
	loadgenCPU := selfCPU() - cpu0
	u := mon.stop()
	// How far generation kept up: jobs finished within the window, and
	// those still waiting for a worker (-queue-size is 1,000,000 here).
	done := metric(c, be.url, `exportstream_backend_jobs{status="COMPLETED"}`)
	queued := metric(c, be.url, "exportstream_backend_queue_depth")
	for _, p := range []string{"block", "mutex", "allocs"} {
		grabProfileFrom(backendPprofAddr, "create-"+p+".pprof", p, 30*time.Second)
	}
	l := lat.sorted()
	s.Rows = append(s.Rows, &Row{Target: "backend, durable", Usage: u, Metrics: map[string]float64{
		"jobs/s": float64(len(l)) / secs, "p50 ms": l.pct(50), "p99 ms": l.pct(99), "max ms": l.pct(100), "errors": float64(errs),
		"generated/s": done / secs, "queued at end": queued,
		// The backend's includes generating the jobs done in the window.
		"backend CPU µs/create": u[be.name].CPUSeconds * 1e6 / float64(max(len(l), 1)),
		"loadgen CPU µs/create": loadgenCPU.Seconds() * 1e6 / float64(max(len(l), 1)),
	}})
	logf("  %.0f jobs/s, p99 %.1f ms, %d errors; %.0f generated/s, %.0f queued at end; CPU µs/create: backend %.0f, load generator %.0f (net/http client: %v)",
		float64(len(l))/secs, l.pct(99), errs, done/secs, queued,
		u[be.name].CPUSeconds*1e6/float64(max(len(l), 1)), loadgenCPU.Seconds()*1e6/float64(max(len(l), 1)), netHTTP)
	return s, nil
}

// createLoad is the create scenario's clients, each posting jobs one
// after another until stopAt on a connection of its own (rawPoster, or
// netHTTP when set), and what they measured.
type createLoad struct {
	url     string
	stopAt  time.Time
	netHTTP func(context.Context) error

	mu   sync.Mutex
	lat  latencies // µs, each successful POST's
	errs int
}

// run runs clients clients until stopAt or ctx ends.
func (l *createLoad) run(ctx context.Context, clients int) {
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() { l.client(ctx) })
	}
	wg.Wait()
}

func (l *createLoad) client(ctx context.Context) {
	// One connection per client, kept alive; see rawPoster.
	p, err := newRawPoster(l.url, "/v1/exports", `{"rows":1,"durationMs":0}`)
	if err != nil {
		logf("  create: %v", err)
		l.mu.Lock()
		l.errs++
		l.mu.Unlock()
		return
	}
	defer p.close()
	post := p.post
	if l.netHTTP != nil {
		post = l.netHTTP
	}
	var mine latencies
	bad := 0
	for i := 0; i < 1_000_000 && time.Now().Before(l.stopAt) && ctx.Err() == nil; i++ {
		t0 := time.Now()
		if err := post(ctx); err != nil {
			if bad++; bad == 1 {
				logf("  create: %v", err)
			}
			continue
		}
		mine = append(mine, int32(time.Since(t0).Microseconds()))
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lat = append(l.lat, mine...)
	l.errs += bad
}

// copyLines forwards r's lines to ch until EOF.
func copyLines(r io.Reader, ch chan<- string) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		ch <- sc.Text()
	}
	close(ch)
}
