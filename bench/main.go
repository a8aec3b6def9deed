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

// sizes are the loads of every scenario at one -size.
type sizes struct {
	replicas replicaSizes // replicas.go
	relay    relaySize
	fanout   fanoutSize
	spread   []spreadShape
	overhead overheadSize
	polling  pollingSize
	idle     idleSize
	users    usersSize
	create   createSize
	floor    floorSize
	slow     slowSize
}

type (
	relaySize    struct{ jobs, subs, rows, durationMs int }
	fanoutSize   struct{ subs, rows, durationMs int }
	overheadSize struct{ jobs, rows, durationMs int }
	pollingSize  struct{ exports, rows, durationMs int }
	idleSize     struct {
		bff, backend, express int
		hold                  time.Duration
	}
	usersSize struct {
		bff, backend, express int
		bffs3                 int // users over 3 BFF processes (one holds ≤ 19,900)
		hold                  time.Duration
	}
	createSize struct {
		clients  int
		duration time.Duration
	}
	floorSize struct{ sockets, rounds int }
	slowSize  struct{ readers, stalled, rows, durationMs int }
)

// sizeNames are the -size values, in the order of the triples in sizeOf.
var sizeNames = []string{"smoke", "short", "full"}

// sizeOf is the loads of -size name: each line is one scenario's load at
// smoke, short and full.
func sizeOf(name string) (sizes, error) {
	i := slices.Index(sizeNames, name)
	if i < 0 {
		return sizes{}, fmt.Errorf("unknown -size %q: smoke, short or full", name)
	}
	return sizes{
		relay:  []relaySize{{2, 5, 20, 1000}, {10, 100, 100, 8000}, {10, 100, 100, 10_000}}[i],
		fanout: []fanoutSize{{20, 10, 1000}, {10_000, 100, 10_000}, {10_000, 100, 10_000}}[i],
		// full: the real shape (each user its own session and export) at 10/s
		// and 1/s, then 1,000 jobs × 10 subscribers at 5/s.
		spread: [][]spreadShape{
			{{4, 1, 10, 1000}, {4, 3, 5, 1000}},
			{{300, 1, 50, 5000}, {3000, 1, 10, 10_000}, {200, 10, 50, 10_000}},
			{{1000, 1, 100, 10_000}, {10_000, 1, 20, 20_000}, {1000, 10, 100, 20_000}},
		}[i],
		overhead: []overheadSize{{1, 10, 1000}, {1, 100, 10_000}, {3, 100, 20_000}}[i],
		polling:  []pollingSize{{3, 10, 500}, {20, 100, 8000}, {100, 100, 60_000}}[i],
		idle:     []idleSize{{50, 50, 20, time.Second}, {5000, 5000, 2000, 10 * time.Second}, {19_900, 10_000, 9_000, 30 * time.Second}}[i],
		// full: one BFF holds 19,900 users (one descriptor each against
		// 20,000); the seed's relay 9,000 (two each: the browser's and its
		// upstream).
		users:  []usersSize{{50, 50, 20, 30, time.Second}, {5000, 5000, 2000, 0, 10 * time.Second}, {19_900, 10_000, 9_000, 50_000, 30 * time.Second}}[i],
		create: []createSize{{4, 500 * time.Millisecond}, {32, 3 * time.Second}, {64, 10 * time.Second}}[i],
		floor:  []floorSize{{50, 5}, {5000, 20}, {9000, 50}}[i],
		// full: 5 events/s, below the fan-out's saturation, so the p99s
		// compare the never-readers, not the machine's queueing.
		slow:     []slowSize{{18, 2, 10, 1000}, {1800, 200, 100, 6000}, {9000, 1000, 100, 20_000}}[i],
		replicas: replicaSizesOf(name),
	}, nil
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

// options are the command line's.
type options struct {
	size, binDir, out, baselines, only, cpuProfile string
	runs                                           int
}

func parseFlags(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.StringVar(&o.size, "size", "short", "smoke, short (make bench, ~5 min) or full (make bench-full, ~16 min a run)")
	fs.StringVar(&o.binDir, "bin", "bin", "directory of the backend and bff binaries (make build-go)")
	fs.StringVar(&o.out, "out", "bench/results", "directory for <date>.json, <date>.md and latency-cdf.svg")
	fs.StringVar(&o.baselines, "baselines", "bench/baselines", "the Express baseline (needs npm ci there)")
	fs.StringVar(&o.only, "scenarios", "", "comma-separated subset of: relay,overhead,polling,users,idle,fanout,spread,create,floor,slow,replicas")
	fs.BoolVar(&quiet, "q", false, "no progress lines")
	fs.IntVar(&o.runs, "runs", 1, "run every scenario this many times, reversing the order of its variants on every other run; the tables show medians and the spread")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write the load generator's own CPU profile here (it shares the cores with the servers)")
	return o, fs.Parse(args)
}

func run(ctx context.Context, args []string) error {
	o, err := parseFlags(args)
	if err != nil {
		return err
	}
	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			return err
		}
		defer func() { _ = f.Close() }()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	sz, err := sizeOf(o.size)
	if err != nil {
		return err
	}
	for _, b := range []string{"backend", "bff"} {
		if _, err := os.Stat(filepath.Join(o.binDir, b)); err != nil {
			return fmt.Errorf("%s not built (make build-go): %w", b, err)
		}
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "exportstream-bench-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(tmp) }()
	e, err := newEnv(o, sz, tmp)
	if err != nil {
		return err
	}
	pprofDir = filepath.Join(o.out, "pprof")
	res := &Results{Date: time.Now().UTC().Format("2006-01-02T15-04-05Z"), Size: o.size, Machine: machine(), LoadStart: loadAvg()}
	began := time.Now()
	failed, err := runScenarios(ctx, e, o, res)
	if err != nil {
		return err
	}
	res.LoadEnd = loadAvg()
	res.Seconds = time.Since(began).Seconds()
	if err := writeResults(res, o.out); err != nil {
		return err
	}
	if len(failed) > 0 {
		return errors.New(strings.Join(failed, "; "))
	}
	return nil
}

// newEnv is the scenarios' env: the binaries and the baseline by absolute
// path, logs and static files in tmp.
func newEnv(o options, sz sizes, tmp string) (*env, error) {
	e := &env{binDir: o.binDir, logDir: tmp, staticDir: tmp, baselineDir: o.baselines, size: sz}
	if _, err := exec.LookPath("node"); err == nil {
		if _, err := os.Stat(filepath.Join(o.baselines, "node_modules", "express")); err == nil {
			e.node = true
		}
	}
	if !e.node {
		logf("note: the Express baseline is skipped (node or %s/node_modules missing; run npm ci there)", o.baselines)
	}
	var err error
	if e.binDir, err = filepath.Abs(e.binDir); err != nil {
		return nil, err
	}
	if e.baselineDir, err = filepath.Abs(e.baselineDir); err != nil {
		return nil, err
	}
	return e, nil
}

// runScenarios runs the chosen scenarios o.runs times into res, each
// scenario's runs merged and judged; it returns the failures, and an error
// only when ctx ends.
func runScenarios(ctx context.Context, e *env, o options, res *Results) ([]string, error) {
	want := strings.Split(o.only, ",")
	var failed []string
	res.Runs = max(o.runs, 1)
	perScenario := map[string][]*Scenario{}
	for run := range res.Runs {
		e.reverse = run%2 == 1
		var this []*Scenario
		for _, sc := range allScenarios {
			if o.only != "" && !slices.Contains(want, sc.name) {
				continue
			}
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			logf("%s, run %d/%d (load %s)…", sc.name, run+1, res.Runs, loadAvg())
			t0 := time.Now()
			s, err := sc.run(ctx, e)
			if err != nil {
				failed = append(failed, fmt.Sprintf("%s, run %d: %v", sc.name, run+1, err))
				logf("  FAILED: %v (logs in %s)", err, e.logDir)
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
	return failed, nil
}

// writeResults writes res to out as <date>.json and <date>.md, and the
// latency CDF of its scenarios that have curves as latency-cdf.svg.
func writeResults(res *Results, out string) error {
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return fmt.Errorf("results as JSON: %w", err)
	}
	base := filepath.Join(out, res.Date)
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
	if err := writeFile(filepath.Join(out, "latency-cdf.svg"), cdfSVG(curves)); err != nil {
		return err
	}
	if !quiet {
		fmt.Println(md)
	}
	logf("wrote %s.json, %s.md and %s", base, base, filepath.Join(out, "latency-cdf.svg"))
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
