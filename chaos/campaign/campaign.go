// Package campaign is exportstream's fault campaign (chaos/README.md). A
// seed fixes a topology, a workload and a fault schedule: RunSeed starts the
// real backend and BFF binaries (and Redis) behind fault proxies, runs the
// seed's simulated browsers while the Injector applies the schedule, heals
// everything and records what every client saw in a History; Check judges
// that history alone, rule by rule, so the checker is tested on histories
// without running anything. Run runs many seeds, appends their Results and
// shrinks a failing schedule to a minimal one.
package campaign

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// Config is a campaign: seeds, each on its topology, with results
// appended to a file so a rerun skips the seeds already passed.
type Config struct {
	Seeds    []uint64
	Topology Topology // "" : by seed parity (ForSeed)
	Duration time.Duration
	Keep     []int // only with one seed: replay these faults of its schedule

	Results     string // JSON lines file; "" : none
	Summary     string // Markdown summary of the whole results file; "" : none
	RerunPassed bool   // run seeds the results file has passed too
	ShrinkRuns  int    // runs allowed to shrink a failing schedule
	KeepRuns    bool   // keep every run's directory (logs, history.json), passed or not

	Repo, BinDir, WorkDir string
	// CI makes missing capabilities (redis-server, tmpfs) fail instead of
	// being skipped.
	CI  bool
	Out io.Writer
	Log *slog.Logger
}

// Run runs the campaign and returns an error when a seed failed or could
// not run.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Keep != nil && len(cfg.Seeds) != 1 {
		return errors.New("-keep replays one seed's schedule: give one -seed")
	}
	work, err := os.MkdirTemp(cfg.WorkDir, "exportstream-chaos-")
	if err != nil {
		return fmt.Errorf("work dir: %w", err)
	}
	defer func() { _ = os.Remove(work) }() // left when a failing run kept its logs
	bins, err := BuildBinaries(ctx, cfg.BinDir, work)
	if err != nil {
		return err
	}
	defer func() {
		if cfg.BinDir == "" {
			_ = os.Remove(bins.Backend)
			_ = os.Remove(bins.BFF)
		}
	}()
	passed, err := passedSeeds(cfg)
	if err != nil {
		return err
	}
	_, redisErr := exec.LookPath("redis-server")
	c := &campaign{cfg: cfg, bins: bins, work: work, passed: passed, redisErr: redisErr, commit: gitCommit(cfg.Repo)}
	results, err := c.runSeeds(ctx)
	if err != nil {
		return err
	}
	_, _ = fmt.Fprintln(cfg.Out)
	PrintTable(cfg.Out, results)
	if err := summarize(cfg); err != nil {
		return err
	}
	if ctx.Err() != nil {
		return fmt.Errorf("campaign interrupted: %w", ctx.Err())
	}
	failed := 0
	for _, r := range results {
		if !r.ok() {
			failed++
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d seeds failed", failed, len(results))
	}
	return nil
}

// campaign is what every seed of one Run shares.
type campaign struct {
	cfg      Config
	bins     Binaries
	work     string          // parent of the runs' directories
	passed   map[string]bool // resultKey of the seeds the results file has passed
	redisErr error           // why topology A cannot run here, if it cannot
	commit   string
}

// runSeeds runs every seed not already passed, appending each result to
// the results file as it comes. An error stops the campaign.
func (c *campaign) runSeeds(ctx context.Context) ([]Result, error) {
	var results []Result
	seeds := c.cfg.Seeds
	// An interruption stops before the next seed; Run reports it after the
	// table of those run.
	for i := 0; i < len(seeds) && ctx.Err() == nil; i++ {
		r, ran, err := c.trySeed(ctx, seeds[i])
		if err != nil {
			return nil, err
		}
		if !ran {
			continue
		}
		results = append(results, r)
		if c.cfg.Results != "" && ctx.Err() == nil {
			if err := AppendResult(c.cfg.Results, r); err != nil {
				return nil, err
			}
		}
	}
	return results, nil
}

// trySeed runs one seed on its topology; false when it was skipped
// (passed before, or topology A without redis-server outside CI).
func (c *campaign) trySeed(ctx context.Context, seed uint64) (Result, bool, error) {
	cfg := c.cfg
	topo := cfg.Topology
	if topo == "" {
		topo = ForSeed(seed)
	}
	hash := ScheduleHash(Schedule(seed, topo, cfg.Duration))
	if c.passed[resultKey(seed, topo, cfg.Duration.Seconds(), hash)] {
		cfg.Log.Info("seed already passed (results file): skipped", "seed", seed, "topology", string(topo))
		return Result{}, false, nil
	}
	if topo == TopologyA && c.redisErr != nil {
		msg := "MISSING COMPONENT: redis-server (apt-get install redis-server); topology A seeds NOT run"
		if cfg.CI {
			return Result{}, false, errors.New("CI=true: " + msg)
		}
		cfg.Log.Warn(strings.Repeat("!", 20) + " " + msg)
		return Result{}, false, nil
	}
	r := runOne(ctx, cfg, RunConfig{Seed: seed, Topology: topo, Duration: cfg.Duration, Keep: cfg.Keep, Bin: c.bins,
		WorkDir: c.work, RequireDisk: cfg.CI, KeepRun: cfg.KeepRuns, Log: cfg.Log})
	r.Commit, r.ScheduleHash = c.commit, hash
	return r, true, nil
}

// passedSeeds are the resultKeys of the seeds the results file has passed,
// which the campaign skips (none when it reruns them or replays -keep).
func passedSeeds(cfg Config) (map[string]bool, error) {
	passed := map[string]bool{}
	if cfg.Results == "" || cfg.RerunPassed || cfg.Keep != nil {
		return passed, nil
	}
	prev, err := LoadResults(cfg.Results)
	if err != nil {
		return nil, err
	}
	for _, r := range prev {
		if r.ok() {
			passed[resultKey(r.Seed, r.Topology, r.DurationSeconds, r.ScheduleHash)] = true
		}
	}
	return passed, nil
}

// summarize rewrites the Markdown summary from the whole results file.
func summarize(cfg Config) error {
	if cfg.Summary == "" || cfg.Results == "" {
		return nil
	}
	all, err := LoadResults(cfg.Results)
	if err != nil {
		return err
	}
	return WriteSummary(cfg.Summary, all)
}

func keptIn(dir string) string {
	if dir == "" {
		return ""
	}
	return " in " + dir
}

func resultKey(seed uint64, t Topology, seconds float64, hash string) string {
	return fmt.Sprintf("%d/%s/%g/%s", seed, t, seconds, hash)
}

// runOne runs a seed; on failure it prints the seed, its schedule and the
// violations, shrinks the schedule and prints the minimal case.
func runOne(ctx context.Context, cfg Config, rc RunConfig) Result {
	cfg.Log.Info("seed", "seed", rc.Seed, "topology", string(rc.Topology), "duration", rc.Duration, "faults", len(Keep(Schedule(rc.Seed, rc.Topology, rc.Duration), rc.Keep)))
	out, err := RunSeed(ctx, rc)
	if err != nil {
		// Not run, or interrupted: what it saw judges nothing.
		cfg.Log.Error("seed could not run", "seed", rc.Seed, "err", err)
		if out != nil && out.Dir != "" {
			_, _ = fmt.Fprintf(cfg.Out, "seed %d interrupted (logs: %s)\n", rc.Seed, out.Dir)
		}
		return Result{Seed: rc.Seed, Topology: rc.Topology, DurationSeconds: rc.Duration.Seconds(), Time: time.Now(), Error: err.Error()}
	}
	r := Summarize(out, rc.Duration)
	r.Replay = replayCommand(rc, FaultIDs(out.Schedule), rc.Keep != nil)
	w := cfg.Out
	_, _ = fmt.Fprintf(w, "seed %d topology %s: %d faults, %d ops, %d events, %d violations (%s)%s\n",
		rc.Seed, rc.Topology, sum(r.Faults), sum(r.Ops), r.Events, len(out.Violations), out.Elapsed.Round(time.Second), keptIn(out.Dir))
	if !out.Failed() {
		return r
	}
	_, _ = fmt.Fprintf(w, "\n=== FAIL seed %d topology %s: %d violations (history and logs: %s)\n", rc.Seed, rc.Topology, len(out.Violations), out.Dir)
	_, _ = fmt.Fprintf(w, "schedule (%d faults):\n", len(out.Schedule))
	for _, f := range out.Schedule {
		_, _ = fmt.Fprintf(w, "  %s\n", f)
	}
	_, _ = fmt.Fprintln(w, "violations:")
	for i, v := range out.Violations {
		if i == 30 {
			_, _ = fmt.Fprintf(w, "  … %d more in %s/history.json\n", len(out.Violations)-i, out.Dir)
			break
		}
		_, _ = fmt.Fprintf(w, "  %s\n", v)
	}
	_, _ = fmt.Fprintf(w, "replay: %s\n", r.Replay)
	if cfg.ShrinkRuns > 0 && ctx.Err() == nil {
		sr := Shrink(ctx, rc, out, cfg.ShrinkRuns)
		r.ShrinkRuns = sr.Runs
		for _, f := range sr.Minimal {
			r.Minimal = append(r.Minimal, f.String())
		}
		r.Replay = replayCommand(rc, FaultIDs(sr.Minimal), true)
		_, _ = fmt.Fprintf(w, "minimal schedule after %d shrink runs (%d of %d faults):\n", sr.Runs, len(sr.Minimal), len(out.Schedule))
		if len(sr.Minimal) == 0 {
			_, _ = fmt.Fprintln(w, "  (none: it fails without faults)")
		}
		for _, f := range sr.Minimal {
			_, _ = fmt.Fprintf(w, "  %s\n", f)
		}
		if sr.Outcome != nil && sr.Outcome != out {
			_, _ = fmt.Fprintln(w, "its violations:")
			for i, v := range sr.Outcome.Violations {
				if i == 10 {
					break
				}
				_, _ = fmt.Fprintf(w, "  %s\n", v)
			}
		}
		_, _ = fmt.Fprintf(w, "replay the minimal case: %s\n", r.Replay)
	}
	return r
}

func replayCommand(rc RunConfig, ids []int, keep bool) string {
	s := fmt.Sprintf("go run ./chaos -seed %d -topology %s -duration %s", rc.Seed, rc.Topology, rc.Duration)
	if keep {
		parts := make([]string, len(ids))
		for i, id := range ids {
			parts[i] = strconv.Itoa(id)
		}
		list := strings.Join(parts, ",")
		if list == "" {
			list = "none"
		}
		s += " -keep " + list
	}
	return s
}

func gitCommit(repo string) string {
	out, err := exec.Command("git", "-C", repo, "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// ParseSeeds reads "7", "1-100" or "1,3,10-12".
func ParseSeeds(s string) ([]uint64, error) {
	var out []uint64
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.ParseUint(lo, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("seeds %q: %w", s, err)
		}
		b := a
		if isRange {
			if b, err = strconv.ParseUint(hi, 10, 64); err != nil || b < a {
				return nil, fmt.Errorf("seeds %q: bad range %q", s, part)
			}
		}
		if b-a > 100000 {
			return nil, fmt.Errorf("seeds %q: range too large", s)
		}
		for x := a; x <= b; x++ {
			out = append(out, x)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("seeds %q: none", s)
	}
	return out, nil
}

// ParseIDs reads "1,4,7" (a schedule's fault IDs); "" or "none" is none.
func ParseIDs(s string) ([]int, error) {
	ids := []int{}
	if s == "" || s == "none" {
		return ids, nil
	}
	for part := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(part))
		if err != nil {
			return nil, fmt.Errorf("-keep %q: %w", s, err)
		}
		ids = append(ids, n)
	}
	return ids, nil
}
