package main

import (
	"fmt"
	"math"
	"slices"
)

// mergeRuns folds several runs of one scenario into one: each row's
// metric is the median over the runs that have that row, its spread the
// lowest and highest; the latency curves pool every run's samples. The
// first run gives the order of rows and the setup text.
func mergeRuns(runs []*Scenario) *Scenario {
	if len(runs) == 1 {
		return runs[0]
	}
	first := runs[0]
	m := &Scenario{Name: first.Name, Setup: first.Setup, Columns: first.Columns, Baseline: first.Baseline,
		Runs: len(runs), curves: poolCurves(runs)}
	for _, row := range first.Rows {
		m.Rows = append(m.Rows, mergeRow(runs, row))
	}
	for _, r := range runs {
		for _, v := range r.Verdicts { // a skipped baseline, say
			if !slices.Contains(m.Verdicts, v) {
				m.Verdicts = append(m.Verdicts, v)
			}
		}
	}
	return m
}

// mergeRow is row's target over all the runs: the median and spread of
// each of row's metrics, and every run's notes labelled with the run.
func mergeRow(runs []*Scenario, row *Row) *Row {
	merged := &Row{Target: row.Target, Metrics: map[string]float64{}, Spread: map[string][2]float64{}}
	for name := range row.Metrics {
		vs := measured(runs, row.Target, name)
		if len(vs) == 0 {
			merged.Metrics[name] = math.NaN()
			continue
		}
		merged.Metrics[name] = median(vs)
		merged.Spread[name] = [2]float64{vs[0], vs[len(vs)-1]}
	}
	for i, r := range runs {
		if other := r.row(row.Target); other != nil {
			for _, n := range other.Notes {
				merged.Notes = append(merged.Notes, runLabel(i)+n)
			}
		}
	}
	return merged
}

// measured is the metric name of target in every run that has it and
// could measure it, sorted.
func measured(runs []*Scenario, target, name string) []float64 {
	var vs []float64
	for _, r := range runs {
		other := r.row(target)
		if other == nil {
			continue
		}
		if v, ok := other.Metrics[name]; ok && !math.IsNaN(v) {
			vs = append(vs, v)
		}
	}
	slices.Sort(vs)
	return vs
}

// poolCurves is each target's latencies over all the runs, sorted.
func poolCurves(runs []*Scenario) map[string]latencies {
	curves := map[string]latencies{}
	for _, r := range runs {
		for target, l := range r.curves {
			curves[target] = append(curves[target], l...)
		}
	}
	for target, l := range curves {
		curves[target] = l.sorted()
	}
	return curves
}

func (s *Scenario) row(target string) *Row {
	for _, r := range s.Rows {
		if r.Target == target {
			return r
		}
	}
	return nil
}

// median of sorted vs.
func median(vs []float64) float64 {
	n := len(vs)
	if n%2 == 1 {
		return vs[n/2]
	}
	return (vs[n/2-1] + vs[n/2]) / 2
}

func runLabel(i int) string {
	return fmt.Sprintf("run %d: ", i+1)
}
