package campaign

import (
	"context"
	"slices"
)

// ShrinkResult is the smallest schedule found that still fails.
type ShrinkResult struct {
	Minimal []Fault
	Runs    int
	// Outcome is the last failing run's (of Minimal), nil when no shrink
	// run failed.
	Outcome *Outcome
}

// Shrink looks for a smaller schedule that still fails the same way (a
// violation of one of the rules the failing run broke): first no faults at
// all, then dropping chunks of faults, halves first, down to one at a
// time (ddmin on complements), within budget runs. Runs are real and
// timing varies, so a fault that matters may be dropped by luck; the
// printed minimal case says how many runs it took.
func Shrink(ctx context.Context, cfg RunConfig, failing *Outcome, budget int) ShrinkResult {
	rules := map[string]bool{}
	for _, v := range failing.Violations {
		rules[v.Rule] = true
	}
	cur := FaultIDs(failing.Schedule)
	res := ShrinkResult{Minimal: failing.Schedule, Outcome: failing}
	full := Schedule(cfg.Seed, cfg.Topology, cfg.Duration)
	try := func(ids []int) bool {
		if ctx.Err() != nil || res.Runs >= budget {
			return false
		}
		res.Runs++
		c := cfg
		c.Keep = append([]int{}, ids...) // non-nil: exactly these
		cfg.Log.Info("shrinking", "seed", cfg.Seed, "run", res.Runs, "of", budget, "faults", len(ids))
		out, err := RunSeed(ctx, c)
		if err != nil || out == nil {
			return false
		}
		still := slices.ContainsFunc(out.Violations, func(v Violation) bool { return rules[v.Rule] })
		if still {
			res.Minimal, res.Outcome = Keep(full, c.Keep), out
		} else if out.Dir != "" {
			out.Dir = ""
		}
		return still
	}
	if len(cur) > 0 && try(nil) {
		return res
	}
	for n := 2; len(cur) >= 2 && res.Runs < budget && ctx.Err() == nil; {
		chunk := (len(cur) + n - 1) / n
		reduced := false
		for i := 0; i < len(cur) && res.Runs < budget; i += chunk {
			cand := append(slices.Clone(cur[:i]), cur[min(i+chunk, len(cur)):]...)
			if try(cand) {
				cur, reduced = cand, true
				n = max(n-1, 2)
				break
			}
		}
		if !reduced {
			if n >= len(cur) {
				break
			}
			n = min(2*n, len(cur))
		}
	}
	return res
}
