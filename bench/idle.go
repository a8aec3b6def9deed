package main

import (
	"context"
	"fmt"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/exportstream/exportstream/e2e/stack"
)

// heldBy says how the idle scenarios hold their streams: for hold, with
// the servers' heartbeat at 5 s, by runIdle's child processes.
func heldBy(hold time.Duration) string {
	return fmt.Sprintf("for %s with a 5 s heartbeat, opened by load-generator child processes of ≤ %d raw connections each", hold, perWorker)
}

// scenarioIdle: the best case, labelled so: idle streams of ONE session
// on ONE export, held by one server process; RSS per stream = (RSS with
// every stream open − RSS before) / n. The real shape is scenarioUsers.
func scenarioIdle(ctx context.Context, e *env) (*Scenario, error) {
	sz := e.size.idle
	s := &Scenario{
		Name: "idle streams, best case: one session, one export",
		Setup: "streams of one 1-hour job of one session (one progress event per 36 s) held " + heldBy(sz.hold) + "; " +
			"RSS/stream = (the server's RSS with every stream open − its RSS before) / streams. A shape owner scoping makes rare (every stream one browser's tab of one session): the real shape is the idle users scenario.",
		Columns:  []string{"streams", "opened", "failed", "ended early", "RSS/stream KiB", "server RSS MiB", "server FDs", "CPU % (idle)"},
		Baseline: "BFF (this project)",
	}
	be, err := e.backend(ctx, "idle-backend", 4, "-heartbeat", "5s")
	if err != nil {
		return nil, err
	}
	defer be.stop()
	variants := []idleVariant{{"BFF (this project)", sz.bff, kindBFF}, {"backend direct (net/http + gin)", sz.backend, kindBackend}}
	if e.node && sz.express > 0 {
		variants = append(variants, idleVariant{"Express relay (seed)", sz.express, kindExpress})
	}
	c := newHTTPClient(nil)
	for _, v := range ordered(e, variants) {
		row, err := v.run(ctx, e, c, be, sz.hold)
		if err != nil {
			return nil, err
		}
		s.Rows = append(s.Rows, row)
	}
	return s, nil
}

// idleVariant is one row of the idle scenario: n streams through kind.
type idleVariant struct {
	name string
	n    int
	kind kind
}

// run holds v.n streams of one new job (created with c) on be, through a
// fresh relay of v.kind (none for kindBackend), and measures the server
// that holds them.
func (v idleVariant) run(ctx context.Context, e *env, c *http.Client, be *server, hold time.Duration) (*Row, error) {
	t := target{kind: v.kind, url: be.url, backend: be.url}
	srv := be
	var err error
	switch v.kind {
	case kindBFF:
		if srv, err = e.bff(ctx, "idle-bff", be.url, "-heartbeat", "5s"); err != nil {
			return nil, err
		}
	case kindExpress:
		if srv, err = e.express(ctx, "idle-express", be.url); err != nil {
			return nil, err
		}
	}
	if srv != be {
		defer srv.stop()
	}
	t.url = srv.url
	j, err := create(ctx, c, t, createReq{Rows: 100, DurationMs: 3_600_000}, "")
	if err != nil {
		return nil, err
	}
	header := ""
	if j.cookie != "" && v.kind == kindBFF {
		header = "Cookie: " + j.cookie
	}
	line := strings.TrimPrefix(eventsURL(t, j.code), t.url) + "\t" + header
	before, _ := stack.SampleProc(srv.pid())
	var peak stack.Sample
	res, usages, err := runIdle(ctx, []idleGroup{{srv, slices.Repeat([]string{line}, v.n)}}, hold, func() {
		time.Sleep(2 * time.Second) // let the server settle (GC) before reading its RSS
		peak, _ = stack.SampleProc(srv.pid())
		if v.kind == kindBFF {
			grabProfile(fmt.Sprintf("idle-%d-heap.pprof", v.n), "heap", 30*time.Second)
			grabProfile(fmt.Sprintf("idle-%d-goroutine.txt", v.n), "goroutine?debug=1", 30*time.Second)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", v.name, err)
	}
	row := &Row{Target: v.name, Metrics: map[string]float64{
		"streams":        float64(v.n),
		"opened":         float64(res.Opened),
		"failed":         float64(res.Failed),
		"ended early":    float64(res.EndedEarly),
		"RSS/stream KiB": float64(peak.RSSKiB-before.RSSKiB) / float64(max(res.Opened, 1)),
		"server RSS MiB": float64(peak.RSSKiB) / 1024,
		"server FDs":     float64(peak.FDs),
		"CPU % (idle)":   usages[srv.name].CPUPercent,
	}, Usage: usages}
	if res.FirstError != "" {
		row.Notes = append(row.Notes, "first error: "+res.FirstError)
	}
	logf("  %s: %d/%d open, %.1f KiB/stream, %d ended early", v.name, res.Opened, v.n, row.Metrics["RSS/stream KiB"], res.EndedEarly)
	return row, nil
}

// scenarioUsers: the real shape of idle load: N users, each its own
// session and its own export (held PENDING behind one long job), each
// with one open stream. Memory per user is the growth of the relays' and
// the backend's RSS from before the first export to every stream open:
// the export's record included, as a user costs it.
func scenarioUsers(ctx context.Context, e *env) (*Scenario, error) {
	sz := e.size.users
	s := &Scenario{
		Name: "idle users: each its own session, export and stream",
		Setup: "N users, each creating one export in a session of its own (held PENDING behind one long job on a 1-worker backend, in memory) and holding one stream of it " + heldBy(sz.hold) + ". " +
			"KiB/user = RSS growth ÷ users, from before the first export to every stream open (the export's record included; \"of which creates\" is the growth by the time every export is created, before any stream); " +
			"FDs/user = the relays' open files ÷ users; backend conns = TCP connections the relays (without one: the browsers) had established to the backend with every stream open; upstream streams = event streams the backend had open then; streams opened/s = users ÷ the time from the first stream request to the last stream open; the backend's goroutines, stack and heap in use per user are Go's own figures (its /metrics), their growth over the same span. " +
			"Fresh processes for each row.",
		Columns: []string{"users", "opened", "failed", "ended early", "relay KiB/user", "backend KiB/user", "total KiB/user", "of which creates KiB/user",
			"relay FDs/user", "relay FDs (largest)", "backend conns", "upstream streams", "streams opened/s", "backend goroutines/user", "backend stack KiB/user", "backend heap KiB/user", "CPU % (idle)"},
		Baseline: "BFF (this project)",
	}
	type variant struct {
		name  string
		n     int
		kind  kind
		procs int
	}
	variants := []variant{{"BFF (this project)", sz.bff, kindBFF, 1}}
	if sz.bffs3 > 0 {
		variants = append(variants, variant{"BFF × 3 processes", sz.bffs3, kindBFF, 3})
	}
	variants = append(variants, variant{"backend direct (no relay)", sz.backend, kindBackend, 0})
	if e.node && sz.express > 0 {
		variants = append(variants, variant{"Express relay (seed baseline: one upstream per user)", sz.express, kindExpress, 1})
	}
	const floor = "floor: a plain net/http SSE server (no store, no session, no relay)"
	variants = append(variants, variant{floor, sz.bff, kindBackend, -1})
	for _, v := range ordered(e, variants) {
		var row *Row
		var err error
		if v.name == floor {
			row, err = usersFloor(ctx, e, v.n, sz.hold)
		} else {
			row, err = usersVariant(ctx, e, v.kind, v.procs, v.n, sz.hold)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", v.name, err)
		}
		row.Target = v.name
		s.Rows = append(s.Rows, row)
		m := row.Metrics
		logf("  %s: %0.f/%d open, %.1f KiB/user (relay %.1f + backend %.1f), %.0f backend conns, %0.f ended early",
			v.name, m["opened"], v.n, m["total KiB/user"], m["relay KiB/user"], m["backend KiB/user"], m["backend conns"], m["ended early"])
	}
	return s, nil
}

// usersFloor holds n idle streams on the plain server (bench
// plain-server, never released): what one Go process pays per open SSE
// stream of net/http, the floor under a relay's share of a user.
func usersFloor(ctx context.Context, e *env, n int, hold time.Duration) (*Row, error) {
	srv, err := e.plain(ctx, "users-plain", 1, time.Second)
	if err != nil {
		return nil, err
	}
	defer srv.stop()
	before, _ := stack.SampleProc(srv.pid())
	g := idleGroup{srv: srv, streams: make([]string, n)}
	for i := range g.streams {
		g.streams[i] = fmt.Sprintf("/v1/exports/%08d-0000-4000-8000-000000000000/events\t", i)
	}
	var peak stack.Sample
	res, usages, err := runIdle(ctx, []idleGroup{g}, hold, func() {
		time.Sleep(2 * time.Second) // let the server settle (GC) before reading its RSS
		peak, _ = stack.SampleProc(srv.pid())
	})
	if err != nil {
		return nil, err
	}
	users := float64(max(res.Opened, 1))
	m := idleMetrics(n, res)
	m["relay KiB/user"] = float64(peak.RSSKiB-before.RSSKiB) / users
	m["total KiB/user"] = m["relay KiB/user"]
	m["relay FDs/user"] = float64(peak.FDs) / users
	m["CPU % (idle)"] = usages[srv.name].CPUPercent
	return idleRow(m, usages, res), nil
}

// idleMetrics starts the metrics of an idle users row: what every variant reports.
func idleMetrics(n int, res idleResult) map[string]float64 {
	return map[string]float64{
		"users":            float64(n),
		"opened":           float64(res.Opened),
		"failed":           float64(res.Failed),
		"ended early":      float64(res.EndedEarly),
		"streams opened/s": float64(res.Opened) / res.OpenSeconds,
	}
}

// idleRow is the row of m, with the first error as a note.
func idleRow(m map[string]float64, usages map[string]usage, res idleResult) *Row {
	row := &Row{Metrics: m, Usage: usages}
	if res.FirstError != "" {
		row.Notes = append(row.Notes, "first error: "+res.FirstError)
	}
	return row
}

// usersVariant runs n idle users against fresh processes: a backend and
// procs relays of kind (none for kindBackend).
func usersVariant(ctx context.Context, e *env, k kind, procs, n int, hold time.Duration) (*Row, error) {
	be, err := e.backendProfiled(ctx, "users-backend", true, 1, "-heartbeat", "5s")
	if err != nil {
		return nil, err
	}
	defer be.stop()
	relays, err := startRelays(ctx, e, k, procs, be.url)
	defer func() { stopAll(relays) }()
	if err != nil {
		return nil, err
	}
	r := &usersRun{be: be, relays: relays, all: append([]*server{be}, relays...)}
	r.before = sampleAll(r.all)
	c := newHTTPClient(nil)
	r.goMem0 = goMemory(c, be.url)
	c.CloseIdleConnections()
	// The one job the worker takes: every user's export waits behind it.
	bt := target{kind: kindBackend, url: be.url, backend: be.url}
	blocker, err := create(ctx, c, bt, createReq{Rows: 100, DurationMs: 3_600_000}, "")
	if err != nil {
		return nil, fmt.Errorf("blocker: %w", err)
	}
	defer cancelJobs(context.WithoutCancel(ctx), c, be.url, []job{blocker})

	// n users, each its own session (no cookie sent) through relay i mod procs.
	groups := make([]idleGroup, max(len(relays), 1))
	for i := range groups {
		groups[i].srv = be
		if len(relays) > 0 {
			groups[i].srv = relays[i]
		}
	}
	lines, err := userStreams(ctx, c, k, groups, be.url, n)
	if err != nil {
		return nil, fmt.Errorf("creating the users' exports: %w", err)
	}
	c.CloseIdleConnections()    // the streams get every descriptor the relays have
	time.Sleep(2 * time.Second) // let the servers settle (GC) before reading their RSS
	r.created = sampleAll(r.all)
	for i, l := range lines {
		g := &groups[i%len(groups)]
		g.streams = append(g.streams, l)
	}
	res, usages, err := runIdle(ctx, groups, hold, func() {
		r.atPeak(fmt.Sprintf("users-%d-%d", n, procs), procs == 1 && k == kindBFF)
	})
	if err != nil {
		return nil, err
	}
	return r.row(n, res, usages), nil
}

// usersRun is one row of the idle users scenario: its processes, and
// what was sampled of them before the first export, with every export
// created, and with every stream open (the peak).
type usersRun struct {
	be     *server
	relays []*server
	all    []*server // be, then the relays

	before, created, peak map[string]stack.Sample
	goMem0, goMem         goMem // the backend's, before and at the peak
	conns                 int   // to the backend, at the peak
	upstreams             float64
}

// atPeak samples every process with every stream open and, with
// BENCH_*_PPROF, profiles where a user's memory goes (the BFF's too when
// bff), the files named after tag.
func (r *usersRun) atPeak(tag string, bff bool) {
	time.Sleep(2 * time.Second) // let the servers settle (GC) before reading their RSS
	r.peak = sampleAll(r.all)
	r.conns = connectionsTo(r.be.url, r.relays)
	grabProfileFrom(backendPprofAddr, tag+"-backend-heap.pprof", "heap", 30*time.Second)
	grabProfileFrom(backendPprofAddr, tag+"-backend-goroutine.txt", "goroutine?debug=1", 30*time.Second)
	if bff {
		grabProfile(tag+"-bff-heap.pprof", "heap", 30*time.Second)
		grabProfile(tag+"-bff-goroutine.txt", "goroutine?debug=1", 30*time.Second)
	}
	mc := newHTTPClient(nil)
	r.upstreams = upstreamsOpen(mc, r.be.url)
	r.goMem = goMemory(mc, r.be.url)
	mc.CloseIdleConnections()
}

// row is the users row of n users: the growth from before to the peak
// per user opened, the relays' summed.
func (r *usersRun) row(n int, res idleResult, usages map[string]usage) *Row {
	var relayGrew, relayFDs, relayMaxFDs, relayCreated int64
	cpu := 0.0
	for _, srv := range r.relays {
		relayGrew += r.peak[srv.name].RSSKiB - r.before[srv.name].RSSKiB
		relayFDs += int64(r.peak[srv.name].FDs)
		relayMaxFDs = max(relayMaxFDs, int64(r.peak[srv.name].FDs))
		cpu += usages[srv.name].CPUPercent
		relayCreated += r.created[srv.name].RSSKiB - r.before[srv.name].RSSKiB
	}
	be := r.be.name
	beGrew := r.peak[be].RSSKiB - r.before[be].RSSKiB
	users := float64(max(res.Opened, 1))
	m := idleMetrics(n, res)
	m["relay KiB/user"], m["relay FDs/user"] = math.NaN(), math.NaN()
	m["backend KiB/user"] = float64(beGrew) / users
	m["total KiB/user"] = float64(relayGrew+beGrew) / users
	m["of which creates KiB/user"] = float64(relayCreated+r.created[be].RSSKiB-r.before[be].RSSKiB) / users
	m["backend conns"] = float64(r.conns)
	m["upstream streams"] = r.upstreams
	m["CPU % (idle)"] = cpu + usages[be].CPUPercent
	// Where the backend's share of a user goes (Go's own figures).
	m["backend stack KiB/user"] = (r.goMem.stack - r.goMem0.stack) / 1024 / users
	m["backend heap KiB/user"] = (r.goMem.heap - r.goMem0.heap) / 1024 / users
	m["backend goroutines/user"] = (r.goMem.goroutines - r.goMem0.goroutines) / users
	if len(r.relays) > 0 {
		m["relay KiB/user"] = float64(relayGrew) / users
		m["relay FDs/user"] = float64(relayFDs) / users
		m["relay FDs (largest)"] = float64(relayMaxFDs)
	}
	row := idleRow(m, usages, res)
	if len(r.relays) > 1 {
		row.Notes = append([]string{fmt.Sprintf("%d relay processes: their RSS growth and open files summed", len(r.relays))}, row.Notes...)
	}
	return row
}

// startRelays starts procs relays of kind in front of backendURL; on an
// error it returns those it started, for the caller to stop.
func startRelays(ctx context.Context, e *env, k kind, procs int, backendURL string) ([]*server, error) {
	var relays []*server
	for i := range procs {
		var srv *server
		var err error
		if k == kindExpress {
			srv, err = e.express(ctx, "users-express", backendURL)
		} else {
			srv, err = e.bff(ctx, fmt.Sprintf("users-bff-%d", i), backendURL, "-heartbeat", "5s")
		}
		if err != nil {
			return relays, err
		}
		relays = append(relays, srv)
	}
	return relays, nil
}

// sampleAll samples every server's process, by name.
func sampleAll(srvs []*server) map[string]stack.Sample {
	out := make(map[string]stack.Sample, len(srvs))
	for _, srv := range srvs {
		out[srv.name], _ = stack.SampleProc(srv.pid())
	}
	return out
}

// userStreams creates n users' exports, 64 at once, each in a session of
// its own (no cookie sent) through group i mod len(groups)'s server, and
// returns each user's stream: its path, a tab and the header that
// authorises it. The error is the first create's that failed.
func userStreams(ctx context.Context, c *http.Client, k kind, groups []idleGroup, backendURL string, n int) ([]string, error) {
	lines := make([]string, n)
	var firstErr firstError
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for i := range n {
		t := target{kind: k, url: groups[i%len(groups)].srv.url, backend: backendURL}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			j, err := create(ctx, c, t, createReq{Rows: 100, DurationMs: 60_000}, "")
			if err != nil {
				firstErr.set(err)
				return
			}
			lines[i] = strings.TrimPrefix(eventsURL(t, j.code), t.url) + "\t" + userHeader(k, j)
		})
	}
	wg.Wait()
	return lines, firstErr.get()
}

// userHeader is the request header line that lets j's user read its
// stream on a target of kind k: the BFF's session cookie, the backend's
// owner (none for the seed's relay).
func userHeader(k kind, j job) string {
	switch {
	case k == kindBFF:
		return "Cookie: " + j.cookie
	case k == kindBackend && j.owner != "":
		return "X-Export-Owner: " + j.owner
	}
	return ""
}

// goMem is a Go server's stack and heap in use (bytes) and its goroutines.
type goMem struct{ stack, heap, goroutines float64 }

// goMemory reads a Go server's goMem from its /metrics.
func goMemory(c *http.Client, url string) goMem {
	return goMem{metric(c, url, "go_memstats_stack_inuse_bytes"), metric(c, url, "go_memstats_heap_inuse_bytes"), metric(c, url, "go_goroutines")}
}

// connectionsTo counts the TCP connections established to the server at
// url (127.0.0.1:port): those the relays opened, their sockets
// (/proc/<pid>/fd) matched against the kernel's table by inode, or with no
// relays every process's (the browsers'). A socket counts only if its peer
// is url's address and it was not accepted on the relays' or url's own
// port: a browser's ephemeral port can equal the backend's port number.
func connectionsTo(url string, relays []*server) int {
	backend, ok := procNetAddr(url)
	if !ok {
		return -1
	}
	inodes := map[string]bool{}
	accepted := map[string]bool{} // the relays' own listening addresses
	for _, r := range relays {
		if a, ok := procNetAddr(r.url); ok {
			accepted[a] = true
		}
		dir := fmt.Sprintf("/proc/%d/fd", r.pid())
		entries, err := os.ReadDir(dir)
		if err != nil {
			return -1
		}
		for _, e := range entries {
			if l, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil {
				if inode, ok := strings.CutPrefix(l, "socket:["); ok {
					inodes[strings.TrimSuffix(inode, "]")] = true
				}
			}
		}
	}
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		return -1
	}
	n := 0
	for _, l := range strings.Split(string(b), "\n")[1:] {
		// local address, remote address, state (01 = ESTABLISHED), …, inode
		f := strings.Fields(l)
		if len(f) <= 9 || f[3] != "01" {
			continue
		}
		if f[2] == backend && f[1] != backend && !accepted[f[1]] && (len(relays) == 0 || inodes[f[9]]) {
			n++
		}
	}
	return n
}

// procNetAddr is url's host:port as /proc/net/tcp writes it (hex, the
// IPv4 address in host byte order), for 127.0.0.1 URLs.
func procNetAddr(url string) (string, bool) {
	host, port, err := net.SplitHostPort(strings.TrimPrefix(url, "http://"))
	if err != nil || host != "127.0.0.1" {
		return "", false
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return "", false
	}
	return fmt.Sprintf("0100007F:%04X", p), true
}

func stopAll(srvs []*server) {
	for _, s := range srvs {
		s.stop()
	}
}
