package campaign

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"
)

// RunConfig is one run of one seed.
type RunConfig struct {
	Seed     uint64
	Topology Topology
	// Duration is the faults phase; the workload runs through it.
	Duration time.Duration
	// Keep lists the schedule's fault IDs to inject (nil: all): how a
	// shrunk schedule is replayed.
	Keep        []int
	Bin         Binaries
	WorkDir     string // each run gets a directory under it
	RequireDisk bool
	KeepRun     bool // keep the run's directory and history.json even when it passed
	Log         *slog.Logger
}

// Bounds of the phases after the faults.
const (
	settleBound = 60 * time.Second // every job terminal
	subsBound   = 20 * time.Second // subscribers see their terminal events
	quietBound  = 20 * time.Second // survivors back at their baseline
)

// Outcome is what one run found.
type Outcome struct {
	History    *History
	Violations []Violation
	Schedule   []Fault // the faults injected (after Keep)
	Dir        string  // logs and history.json; removed when the run passed
	Elapsed    time.Duration
}

// Failed reports violations.
func (o *Outcome) Failed() bool { return len(o.Violations) > 0 }

// browsersFor is how many simulated browsers a topology gets.
func browsersFor(t Topology) int {
	if t == TopologyA {
		return 4
	}
	return 3
}

// RunSeed starts the topology, runs the seed's workload under its fault
// schedule, heals everything, waits (bounded) for every job to end, checks
// files and leaks, stops everything and checks the history.
func RunSeed(ctx context.Context, cfg RunConfig) (*Outcome, error) {
	began := time.Now()
	log := cfg.Log.With("seed", cfg.Seed, "topology", string(cfg.Topology))
	dir, err := os.MkdirTemp(cfg.WorkDir, fmt.Sprintf("seed-%d-%s-", cfg.Seed, cfg.Topology))
	if err != nil {
		return nil, fmt.Errorf("run dir: %w", err)
	}
	schedule := Keep(Schedule(cfg.Seed, cfg.Topology, cfg.Duration), cfg.Keep)
	stack, err := StartStack(ctx, StackConfig{Topology: cfg.Topology, Bin: cfg.Bin, Dir: dir, Log: log, RequireDisk: cfg.RequireDisk})
	if err != nil {
		return nil, fmt.Errorf("start topology %s (logs in %s): %w", cfg.Topology, dir, err)
	}
	defer stack.Close()

	base, err := baselines(ctx, stack)
	if err != nil {
		return nil, err
	}

	rec := NewRecorder(cfg.Seed, cfg.Topology)
	w := NewWorkload(ctx, cfg.Seed, browsersFor(cfg.Topology), stack.BFFURLs(), rec, log)
	defer w.Close()
	start := time.Now()
	inj := &Injector{stack: stack, rec: rec, log: log}
	done := make(chan struct{})
	go func() { defer close(done); inj.Run(ctx, start, schedule) }()
	w.Run(ctx, start.Add(cfg.Duration))
	<-done
	rec.Update(func(h *History) { h.FaultsEnd = time.Now() })
	log.Info("faults over; healing and settling")

	healErrs := stack.Heal(ctx)
	final, settled := w.Settle(ctx, settleBound)
	rec.Update(func(h *History) { h.SettleTimedOut = !settled })
	w.FinishSubscribers(final, subsBound)
	w.FinalDownloads(ctx, final)
	w.Close()

	procs := checkProcs(ctx, stack, base, healErrs)
	rec.Update(func(h *History) { h.Procs = procs })
	stack.Close()

	h := rec.History()
	out := &Outcome{History: h, Violations: Check(h), Schedule: schedule, Dir: dir, Elapsed: time.Since(began)}
	if ctx.Err() != nil {
		return out, fmt.Errorf("run interrupted: %w", ctx.Err())
	}
	if out.Failed() || cfg.KeepRun {
		writeHistory(dir, h)
	} else {
		_ = os.RemoveAll(dir)
		out.Dir = ""
	}
	return out, nil
}

// baselines samples every Go process, ready and idle, before the workload.
func baselines(ctx context.Context, stack *Stack) (map[string]ProcSample, error) {
	base := map[string]ProcSample{}
	for _, p := range stack.goProcs() {
		s, err := sample(ctx, p)
		if err != nil {
			return nil, fmt.Errorf("baseline: %w", err)
		}
		base[p.name] = s
	}
	return base, nil
}

// checkProcs reads every process after the heal: whether it came back,
// crashed or panicked, and each survivor's final sample against its
// baseline.
func checkProcs(ctx context.Context, stack *Stack, base map[string]ProcSample, healErrs map[string]error) []ProcCheck {
	var procs []ProcCheck
	for _, p := range stack.goProcs() {
		pc := ProcCheck{Name: p.name, Survivor: !p.everKilled(), Healed: healErrs[p.name] == nil, Base: base[p.name],
			Crashes: p.crashed(), Panics: p.panics()}
		if err := healErrs[p.name]; err != nil {
			pc.HealErr = err.Error()
		}
		if pc.Survivor && pc.Healed {
			pc.Final = quietSample(ctx, p, pc.Base)
		}
		procs = append(procs, pc)
	}
	if r := stack.redis; r != nil {
		pc := ProcCheck{Name: "redis", Healed: healErrs["redis"] == nil, Crashes: r.crashed()}
		if err := healErrs["redis"]; err != nil {
			pc.HealErr = err.Error()
		}
		procs = append(procs, pc)
	}
	return procs
}

// quietSample polls a survivor until it is back within the tolerance of
// its baseline (the BFF's upstreams linger a second after their last
// browser) or quietBound passes, and returns its last sample.
func quietSample(ctx context.Context, p *proc, base ProcSample) ProcSample {
	var final ProcSample
	_ = waitFor(ctx, quietBound, func() error {
		s, err := sample(ctx, p)
		if err != nil {
			return err
		}
		final = s
		if probs := LeakProblems(p.name, base, s); len(probs) > 0 {
			return fmt.Errorf("%v", probs)
		}
		return nil
	})
	return final
}

// writeHistory keeps the history the checker judged beside the run's logs.
func writeHistory(dir string, h *History) {
	if b, err := json.MarshalIndent(h, "", " "); err == nil {
		_ = os.WriteFile(filepath.Join(dir, "history.json"), b, 0o600)
	}
}
