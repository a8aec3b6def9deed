// Command bench is exportstream's load generator and benchmark harness: it
// starts the real backend and BFF binaries (and the seed's Express relay,
// the baseline in baselines/, and a plain Go SSE server as the floor),
// runs the scenarios against them on loopback, samples their RSS and CPU
// from /proc, and writes the results as JSON, a Markdown table per
// scenario and a latency CDF (SVG). With -runs N every scenario runs N
// times, its variants' order reversed on every other run, and the tables
// show medians with the lowest and highest.
//
//	go run ./bench -size short            # make bench
//	go run ./bench -size full -runs 3     # make bench-full
//	go run ./bench -size smoke   # make bench-smoke: seconds, keeps the harness from rotting
//
// Only 127.0.0.0/8 is ever dialled; connections come from 127.0.0.2–201 in
// turn; every loop is bounded in count and time.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"syscall"
	"time"
)

type sizes struct {
	replicas replicaSizes // replicas.go

	relay  struct{ jobs, subs, rows, durationMs int }
	fanout struct {
		subs, rows, durationMs int
	}
	spread   []spreadShape
	overhead struct{ jobs, rows, durationMs int }
	polling  struct{ exports, rows, durationMs int }
	idle     struct {
		bff, backend, express int
		hold                  time.Duration
	}
	users struct {
		bff, backend, express int
		bffs3                 int // users over 3 BFF processes (one holds ≤ 19,900)
		hold                  time.Duration
	}
	create struct {
		clients  int
		duration time.Duration
	}
	floor struct{ sockets, rounds int }
	slow  struct{ readers, stalled, rows, durationMs int }
}

func sizeOf(name string) (sizes, error) {
	var s sizes
	switch name {
	case "smoke":
		s.relay.jobs, s.relay.subs, s.relay.rows, s.relay.durationMs = 2, 5, 20, 1000
		s.fanout.subs, s.fanout.rows, s.fanout.durationMs = 20, 10, 1000
		s.spread = []spreadShape{{4, 1, 10, 1000}, {4, 3, 5, 1000}}
		s.overhead.jobs, s.overhead.rows, s.overhead.durationMs = 1, 10, 1000
		s.polling.exports, s.polling.rows, s.polling.durationMs = 3, 10, 500
		s.idle.bff, s.idle.backend, s.idle.express, s.idle.hold = 50, 50, 20, time.Second
		s.users.bff, s.users.backend, s.users.express, s.users.bffs3, s.users.hold = 50, 50, 20, 30, time.Second
		s.create.clients, s.create.duration = 4, 500*time.Millisecond
		s.floor.sockets, s.floor.rounds = 50, 5
		s.slow.readers, s.slow.stalled, s.slow.rows, s.slow.durationMs = 18, 2, 10, 1000
	case "short":
		s.relay.jobs, s.relay.subs, s.relay.rows, s.relay.durationMs = 10, 100, 100, 8000
		s.fanout.subs, s.fanout.rows, s.fanout.durationMs = 10_000, 100, 10_000
		s.spread = []spreadShape{{300, 1, 50, 5000}, {3000, 1, 10, 10_000}, {200, 10, 50, 10_000}}
		s.overhead.jobs, s.overhead.rows, s.overhead.durationMs = 1, 100, 10_000
		s.polling.exports, s.polling.rows, s.polling.durationMs = 20, 100, 8000
		s.idle.bff, s.idle.backend, s.idle.express, s.idle.hold = 5000, 5000, 2000, 10*time.Second
		s.users.bff, s.users.backend, s.users.express, s.users.hold = 5000, 5000, 2000, 10*time.Second
		s.create.clients, s.create.duration = 32, 3*time.Second
		s.floor.sockets, s.floor.rounds = 5000, 20
		s.slow.readers, s.slow.stalled, s.slow.rows, s.slow.durationMs = 1800, 200, 100, 6000
	case "full":
		s.relay.jobs, s.relay.subs, s.relay.rows, s.relay.durationMs = 10, 100, 100, 10_000
		s.fanout.subs, s.fanout.rows, s.fanout.durationMs = 10_000, 100, 10_000
		// The real shape (each user its own session and export) at 10/s and
		// 1/s, then issue 8's 1,000 jobs × 10 subscribers at 5/s.
		s.spread = []spreadShape{{1000, 1, 100, 10_000}, {10_000, 1, 20, 20_000}, {1000, 10, 100, 20_000}}
		s.overhead.jobs, s.overhead.rows, s.overhead.durationMs = 3, 100, 20_000
		s.polling.exports, s.polling.rows, s.polling.durationMs = 100, 100, 60_000
		s.idle.bff, s.idle.backend, s.idle.express, s.idle.hold = 19_900, 10_000, 9_000, 30*time.Second
		// One BFF holds 19,900 users (one descriptor each against 20,000);
		// the seed's relay 9,000 (two each: the browser's and its upstream).
		s.users.bff, s.users.backend, s.users.express, s.users.hold = 19_900, 10_000, 9_000, 30*time.Second
		s.users.bffs3 = 50_000
		s.create.clients, s.create.duration = 64, 10*time.Second
		s.floor.sockets, s.floor.rounds = 9000, 50
		s.slow.readers, s.slow.stalled, s.slow.rows, s.slow.durationMs = 9000, 1000, 100, 20_000 // 5 events/s: below the fan-out's saturation, so the p99s compare the never-readers, not the machine's queueing
	default:
		return s, fmt.Errorf("unknown -size %q: smoke, short or full", name)
	}
	s.replicas = replicaSizesOf(name)
	return s, nil
}

var allScenarios = []struct {
	name string
	run  func(context.Context, *env) (*Scenario, error)
}{
	{"relay", scenarioRelay},
	{"overhead", scenarioOverhead},
	{"polling", scenarioPolling},
	{"users", scenarioUsers},
	{"idle", scenarioIdle},
	{"fanout", scenarioFanOut},
	{"spread", scenarioSpread},
	{"create", scenarioCreate},
	{"floor", scenarioFloor},
	{"slow", scenarioSlow},
	{"replicas", scenarioReplicas},
}

var quiet bool

func logf(format string, args ...any) {
	if !quiet {
		fmt.Fprintf(os.Stderr, format+"\n", args...)
	}
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "idle-worker" {
		if err := idleWorker(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "idle-worker:", err)
			os.Exit(1)
		}
		return
	}
	if len(os.Args) > 1 && os.Args[1] == "plain-server" {
		if err := plainServer(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "plain-server:", err)
			os.Exit(1)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	size := fs.String("size", "short", "smoke, short (make bench, ~5 min) or full (make bench-full, ~16 min a run)")
	binDir := fs.String("bin", "bin", "directory of the backend and bff binaries (make build-go)")
	out := fs.String("out", "bench/results", "directory for <date>.json, <date>.md and latency-cdf.svg")
	baselines := fs.String("baselines", "bench/baselines", "the Express baseline (needs npm ci there)")
	only := fs.String("scenarios", "", "comma-separated subset of: relay,overhead,polling,users,idle,fanout,spread,create,floor,slow,replicas")
	fs.BoolVar(&quiet, "q", false, "no progress lines")
	runs := fs.Int("runs", 1, "run every scenario this many times, reversing the order of its variants on every other run; the tables show medians and the spread")
	selfProfile := fs.String("cpuprofile", "", "write the load generator's own CPU profile here (it shares the cores with the servers)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *selfProfile != "" {
		f, err := os.Create(*selfProfile)
		if err != nil {
			return err
		}
		defer func() { _ = f.Close() }()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	sz, err := sizeOf(*size)
	if err != nil {
		return err
	}
	for _, b := range []string{"backend", "bff"} {
		if _, err := os.Stat(filepath.Join(*binDir, b)); err != nil {
			return fmt.Errorf("%s not built (make build-go): %w", b, err)
		}
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "exportstream-bench-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(tmp) }()
	e := &env{binDir: *binDir, logDir: tmp, staticDir: tmp, baselineDir: *baselines, size: sz}
	if _, err := exec.LookPath("node"); err == nil {
		if _, err := os.Stat(filepath.Join(*baselines, "node_modules", "express")); err == nil {
			e.node = true
		}
	}
	if !e.node {
		logf("note: the Express baseline is skipped (node or %s/node_modules missing; run npm ci there)", *baselines)
	}
	if e.binDir, err = filepath.Abs(e.binDir); err != nil {
		return err
	}
	if e.baselineDir, err = filepath.Abs(e.baselineDir); err != nil {
		return err
	}

	pprofDir = filepath.Join(*out, "pprof")
	res := &Results{Date: time.Now().UTC().Format("2006-01-02T15-04-05Z"), Size: *size, Machine: machine(), LoadStart: loadAvg()}
	began := time.Now()
	want := strings.Split(*only, ",")
	var failed []string
	res.Runs = max(*runs, 1)
	perScenario := map[string][]*Scenario{}
	for run := range res.Runs {
		e.reverse = run%2 == 1
		var this []*Scenario
		for _, sc := range allScenarios {
			if *only != "" && !slices.Contains(want, sc.name) {
				continue
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			logf("%s, run %d/%d (load %s)…", sc.name, run+1, res.Runs, loadAvg())
			t0 := time.Now()
			s, err := sc.run(ctx, e)
			if err != nil {
				failed = append(failed, fmt.Sprintf("%s, run %d: %v", sc.name, run+1, err))
				logf("  FAILED: %v (logs in %s)", err, tmp)
				continue
			}
			logf("  %.1f s", time.Since(t0).Seconds())
			this = append(this, s)
			perScenario[sc.name] = append(perScenario[sc.name], s)
		}
		if res.Runs > 1 {
			res.EachRun = append(res.EachRun, this)
		}
	}
	for _, sc := range allScenarios {
		if runs := perScenario[sc.name]; len(runs) > 0 {
			s := mergeRuns(runs)
			judge(s)
			res.Scenarios = append(res.Scenarios, s)
		}
	}
	res.LoadEnd = loadAvg()
	res.Seconds = time.Since(began).Seconds()

	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return fmt.Errorf("results as JSON: %w", err)
	}
	base := filepath.Join(*out, res.Date)
	if err := writeFile(base+".json", string(b)+"\n"); err != nil {
		return err
	}
	md := res.markdown()
	if err := writeFile(base+".md", md); err != nil {
		return err
	}
	var curves []*Scenario
	for _, s := range res.Scenarios {
		if len(s.curves) > 0 {
			curves = append(curves, s)
		}
	}
	if err := writeFile(filepath.Join(*out, "latency-cdf.svg"), cdfSVG(curves)); err != nil {
		return err
	}
	if !quiet {
		fmt.Println(md)
	}
	logf("wrote %s.json, %s.md and %s", base, base, filepath.Join(*out, "latency-cdf.svg"))
	if len(failed) > 0 {
		return errors.New(strings.Join(failed, "; "))
	}
	return nil
}

func machine() string {
	model := "?"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "model name"); ok {
				model = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	mem := "?"
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int64
		if _, err := fmt.Sscanf(strings.SplitN(string(b), "\n", 2)[0], "MemTotal: %d kB", &kb); err == nil {
			mem = fmt.Sprintf("%.0f GiB", float64(kb)/(1<<20))
		}
	}
	return fmt.Sprintf("%d × %s, %s RAM, %s/%s, %s", runtime.NumCPU(), model, mem, runtime.GOOS, runtime.GOARCH, runtime.Version())
}
