package campaign

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// Topology is the system under test.
type Topology string

const (
	// TopologyA is scaled out: Redis, 3 backends sharing a files directory,
	// 2 BFFs, each BFF reaching the backends through a failover proxy.
	TopologyA Topology = "A"
	// TopologyB is one node: 1 backend on its embedded store, 1 BFF.
	TopologyB Topology = "B"
)

// ForSeed is the topology a seed runs on when none is forced: odd seeds A,
// even seeds B.
func ForSeed(seed uint64) Topology {
	if seed%2 == 1 {
		return TopologyA
	}
	return TopologyB
}

// ParseTopology reads "A", "B" (or "auto": "").
func ParseTopology(s string) (Topology, error) {
	switch strings.ToUpper(s) {
	case "A":
		return TopologyA, nil
	case "B":
		return TopologyB, nil
	case "", "AUTO":
		return "", nil
	}
	return "", fmt.Errorf("topology %q: want A, B or auto", s)
}

// Fault kinds.
const (
	FaultKill      = "kill"          // kill -9 a backend or BFF, restart it after Dur
	FaultPause     = "pause"         // SIGSTOP, SIGCONT after Dur
	FaultRedis     = "redis-restart" // kill -9 redis-server, restart it on its AOF after Dur
	FaultDelay     = "delay"         // add Latency to every chunk on a link
	FaultReset     = "reset"         // reset a link's connections, refuse new ones for Dur
	FaultBlackhole = "blackhole"     // a link forwards nothing for Dur (connections stay open)
	FaultDiskFull  = "disk-full"     // fill the data directory's tmpfs, free it after Dur
)

// FaultKinds lists every kind, for tables.
var FaultKinds = []string{FaultKill, FaultPause, FaultRedis, FaultDelay, FaultReset, FaultBlackhole, FaultDiskFull}

// Fault is one entry of a schedule: At after the faults phase starts, on
// Target, for Dur.
type Fault struct {
	ID      int           `json:"id"`
	At      time.Duration `json:"at"`
	Dur     time.Duration `json:"dur"`
	Kind    string        `json:"kind"`
	Target  string        `json:"target"`
	Latency time.Duration `json:"latency,omitempty"`
}

func (f Fault) String() string {
	s := fmt.Sprintf("#%d +%.1fs %s %s for %.1fs", f.ID, f.At.Seconds(), f.Kind, f.Target, f.Dur.Seconds())
	if f.Latency > 0 {
		s += fmt.Sprintf(" (%dms)", f.Latency.Milliseconds())
	}
	return s
}

// Targets of faults, by topology.
func processTargets(t Topology) (backends, bffs int) {
	if t == TopologyA {
		return 3, 2
	}
	return 1, 1
}

type candidate struct {
	kind, target string
	weight       float64
}

func candidates(t Topology) []candidate {
	backends, bffs := processTargets(t)
	var cs []candidate
	for i := 1; i <= backends; i++ {
		b := fmt.Sprintf("backend-%d", i)
		cs = append(cs, candidate{FaultKill, b, 3.0 / float64(backends)}, candidate{FaultPause, b, 2.0 / float64(backends)})
	}
	for i := 1; i <= bffs; i++ {
		b := fmt.Sprintf("bff-%d", i)
		cs = append(cs, candidate{FaultKill, b, 2.0 / float64(bffs)}, candidate{FaultPause, b, 1.0 / float64(bffs)})
		l := fmt.Sprintf("bfflink-%d", i)
		for _, k := range []string{FaultDelay, FaultReset, FaultBlackhole} {
			cs = append(cs, candidate{k, l, 1.5 / float64(bffs)})
		}
	}
	if t == TopologyA {
		cs = append(cs, candidate{FaultRedis, "redis", 2})
		for i := 1; i <= backends; i++ {
			l := fmt.Sprintf("redislink-%d", i)
			for _, k := range []string{FaultDelay, FaultReset, FaultBlackhole} {
				cs = append(cs, candidate{k, l, 1.5 / float64(backends)})
			}
		}
	}
	return append(cs, candidate{FaultDiskFull, "disk", 1.5})
}

// between is a uniform duration in [lo, hi].
func between(rng *rand.Rand, lo, hi time.Duration) time.Duration {
	return lo + time.Duration(rng.Int64N(int64(hi-lo)+1))
}

// MeanFaultGap is the average time between fault starts: in A faults
// spread over 6 processes and 5 links; in B every fault hits the one
// path, and at A's rate the system would be down most of the run.
func MeanFaultGap(t Topology) time.Duration {
	if t == TopologyA {
		return 1500 * time.Millisecond
	}
	return 2500 * time.Millisecond
}

// Schedule is the seed's fault schedule for a faults phase of d: about one
// fault every MeanFaultGap, overlapping across targets (never two at once
// on one target), each over by d. The same seed, topology and d give the
// same schedule.
func Schedule(seed uint64, t Topology, d time.Duration) []Fault {
	rng := rand.New(rand.NewPCG(seed, 0xc4a05fa17))
	cs := candidates(t)
	var total float64
	for _, c := range cs {
		total += c.weight
	}
	n := int(d/MeanFaultGap(t)) + rng.IntN(3)
	var fs []Fault
	for range n {
		x := rng.Float64() * total
		c := cs[len(cs)-1]
		for _, cand := range cs {
			if x < cand.weight {
				c = cand
				break
			}
			x -= cand.weight
		}
		f := Fault{Kind: c.kind, Target: c.target}
		switch c.kind {
		case FaultKill:
			f.Dur = between(rng, 100*time.Millisecond, 3*time.Second)
		case FaultPause:
			f.Dur = between(rng, 500*time.Millisecond, 4*time.Second)
		case FaultRedis:
			f.Dur = between(rng, 200*time.Millisecond, 3*time.Second)
		case FaultDelay:
			f.Dur = between(rng, time.Second, 5*time.Second)
			f.Latency = between(rng, 20*time.Millisecond, 400*time.Millisecond)
		case FaultReset:
			f.Dur = between(rng, 200*time.Millisecond, 3*time.Second)
		case FaultBlackhole:
			// Past go-redis's 3 s read timeout and the BFF's 6 s idle
			// timeout, so clients give up on held requests. B's one path
			// gets shorter ones.
			f.Dur = between(rng, time.Second, map[Topology]time.Duration{TopologyA: 9 * time.Second, TopologyB: 6 * time.Second}[t])
		case FaultDiskFull:
			f.Dur = between(rng, time.Second, 5*time.Second)
		}
		last := d - f.Dur - 500*time.Millisecond
		if last <= 500*time.Millisecond {
			continue
		}
		f.At = between(rng, 500*time.Millisecond, last).Round(100 * time.Millisecond)
		f.Dur = f.Dur.Round(100 * time.Millisecond)
		fs = append(fs, f)
	}
	sort.SliceStable(fs, func(i, j int) bool { return fs[i].At < fs[j].At })
	// One fault at a time per target: a later one starts 300 ms after the
	// earlier ends, or is dropped if that runs past d.
	busy := map[string]time.Duration{}
	out := fs[:0]
	for _, f := range fs {
		if b, ok := busy[f.Target]; ok && f.At < b+300*time.Millisecond {
			f.At = b + 300*time.Millisecond
		}
		if f.At+f.Dur > d-500*time.Millisecond {
			continue
		}
		busy[f.Target] = f.At + f.Dur
		out = append(out, f)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].At < out[j].At })
	for i := range out {
		out[i].ID = i
	}
	return out
}

// ScheduleHash identifies a schedule (the first 12 hex digits of the
// SHA-256 of its faults as printed).
func ScheduleHash(fs []Fault) string {
	var b strings.Builder
	for _, f := range fs {
		b.WriteString(f.String())
		b.WriteByte('\n')
	}
	return SHA256Hex([]byte(b.String()))[:12]
}

// Keep returns the faults whose IDs are in ids (nil: all).
func Keep(fs []Fault, ids []int) []Fault {
	if ids == nil {
		return fs
	}
	var out []Fault
	for _, f := range fs {
		if slices.Contains(ids, f.ID) {
			out = append(out, f)
		}
	}
	return out
}

// FaultIDs lists the faults' IDs.
func FaultIDs(fs []Fault) []int {
	ids := make([]int, len(fs))
	for i, f := range fs {
		ids[i] = f.ID
	}
	return ids
}

// Injector applies a schedule to a stack.
type Injector struct {
	stack *Stack
	rec   *Recorder
	log   *slog.Logger
}

// Run applies every fault at its time and undoes it after its duration;
// it returns once every fault is undone. When ctx ends early, pending
// faults are skipped and applied ones undone at once.
func (in *Injector) Run(ctx context.Context, start time.Time, faults []Fault) {
	var wg sync.WaitGroup
	for _, f := range faults {
		wg.Go(func() { in.one(ctx, start, f) })
	}
	wg.Wait()
}

func (in *Injector) one(ctx context.Context, start time.Time, f Fault) {
	rec := FaultRecord{Fault: f}
	defer func() { in.rec.Fault(rec) }()
	if !waitUntil(ctx, start.Add(f.At)) {
		rec.Skipped = "the run ended first"
		return
	}
	undo, skipped, err := in.apply(ctx, f)
	rec.Applied = time.Now()
	switch {
	case skipped != "":
		rec.Skipped = skipped
		in.log.Warn("fault skipped", "fault", f.String(), "why", skipped)
		return
	case err != nil:
		rec.Err = err.Error()
		in.log.Error("fault failed", "fault", f.String(), "err", err)
	default:
		in.log.Info("fault", "fault", f.String())
	}
	waitUntil(ctx, rec.Applied.Add(f.Dur))
	if undo != nil {
		// Undo even when ctx is done: a stopped process or a full disk
		// must not outlive the run's faults phase.
		if err := undo(context.WithoutCancel(ctx)); err != nil {
			rec.Err = strings.TrimPrefix(rec.Err+"; undo: "+err.Error(), "; ")
			in.log.Error("undo fault", "fault", f.String(), "err", err)
		}
	}
	rec.Undone = time.Now()
}

// apply injects f and returns how to undo it; skipped says why it could
// not be injected here (no tmpfs for the disk).
func (in *Injector) apply(ctx context.Context, f Fault) (undo func(context.Context) error, skipped string, err error) {
	s := in.stack
	switch f.Kind {
	case FaultKill:
		p := s.proc(f.Target)
		p.kill()
		return p.restart, "", nil
	case FaultPause:
		p := s.proc(f.Target)
		if err := p.pause(); err != nil {
			return nil, "", err
		}
		return func(context.Context) error { return p.resume() }, "", nil
	case FaultRedis:
		s.redis.kill()
		return s.redis.restart, "", nil
	case FaultDelay:
		l := s.link(f.Target)
		l.SetLatency(f.Latency)
		return func(context.Context) error { l.SetLatency(0); return nil }, "", nil
	case FaultReset:
		l := s.link(f.Target)
		l.Refuse(true)
		l.CutAll()
		return func(context.Context) error { l.Refuse(false); return nil }, "", nil
	case FaultBlackhole:
		l := s.link(f.Target)
		l.Blackhole(true)
		return func(context.Context) error { l.Blackhole(false); return nil }, "", nil
	case FaultDiskFull:
		if s.disk == nil || !s.disk.mounted {
			return nil, "no tmpfs under the data directory (mount failed: not root?): disk-full faults are not injected", nil
		}
		if err := s.disk.fill(ctx); err != nil {
			return s.disk.free, "", err
		}
		return s.disk.free, "", nil
	}
	return nil, "", fmt.Errorf("unknown fault kind %q", f.Kind)
}

// waitUntil waits for t or ctx; false if ctx ended first. The campaign's
// faults are timed this way on purpose: the schedule is the test's input.
func waitUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}
