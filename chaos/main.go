// Command chaos is exportstream's fault campaign: for each seed it starts
// the real services (topology A: Redis, 3 backends, 2 BFFs; B: 1 backend
// on its embedded store, 1 BFF), runs the seed's browsers against them
// while injecting the seed's faults, then checks the recorded history
// (chaos/README.md). It only wires flags to package campaign.
//
//	go run ./chaos -seeds 1-100                       # the campaign (make chaos)
//	go run ./chaos -seed 7 -topology A                # replay one seed
//	go run ./chaos -seed 7 -topology A -keep 2,5      # replay a shrunk schedule
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/exportstream/exportstream/chaos/campaign"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("chaos", flag.ContinueOnError)
	seed := fs.String("seed", "", "one seed (replay); same as -seeds N")
	seeds := fs.String("seeds", "1-100", "seeds to run: 7, 1-100 or 1,3,10-12")
	topology := fs.String("topology", "auto", "A (Redis, 3 backends, 2 BFFs), B (1 backend, 1 BFF) or auto (odd seeds A, even B)")
	duration := fs.Duration("duration", 30*time.Second, "faults phase of each seed (the workload runs through it)")
	var keep []int
	fs.Func("keep", "replay only these fault IDs of the seed's schedule (comma-separated; 'none' for no faults)", func(s string) error {
		ids, err := campaign.ParseIDs(s)
		keep = ids
		return err
	})
	results := fs.String("results", "", "append one JSON line per seed to this file; seeds it has passed are skipped")
	summary := fs.String("summary", "", "write a Markdown summary of the whole results file here")
	rerun := fs.Bool("rerun-passed", false, "run seeds the results file has passed too")
	shrinkRuns := fs.Int("shrink-runs", 8, "runs allowed to shrink a failing schedule (0: do not shrink)")
	binDir := fs.String("bin-dir", os.Getenv("EXPORTSTREAM_BIN_DIR"), "take the backend and bff binaries from here instead of building them (EXPORTSTREAM_BIN_DIR)")
	workDir := fs.String("work-dir", "", "parent of the runs' directories (default: the system's temporary directory)")
	keepRuns := fs.Bool("keep-runs", false, "keep every run's directory (service logs, history.json), passed or not")
	verbose := fs.Bool("v", false, "log every fault and phase")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *seed != "" {
		*seeds = *seed
	}
	list, err := campaign.ParseSeeds(*seeds)
	if err != nil {
		return err
	}
	topo, err := campaign.ParseTopology(*topology)
	if err != nil {
		return err
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	wd, err := os.Getwd()
	if err != nil {
		return err
	}
	repo, err := campaign.RepoRoot(wd)
	if err != nil {
		return err
	}
	return campaign.Run(ctx, campaign.Config{
		Seeds: list, Topology: topo, Duration: *duration, Keep: keep,
		Results: *results, Summary: *summary, RerunPassed: *rerun, ShrinkRuns: *shrinkRuns, KeepRuns: *keepRuns,
		Repo: repo, BinDir: *binDir, WorkDir: *workDir, CI: os.Getenv("CI") == "true",
		Out: os.Stdout, Log: log,
	})
}
