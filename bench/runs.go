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
		Runs: len(runs), curves: map[string]latencies{}}
	for _, row := range first.Rows {
		merged := &Row{Target: row.Target, Metrics: map[string]float64{}, Spread: map[string][2]float64{}}
		for name := range row.Metrics {
			var vs []float64
			for _, r := range runs {
				if other := r.row(row.Target); other != nil {
					if v, ok := other.Metrics[name]; ok && !math.IsNaN(v) {
						vs = append(vs, v)
					}
				}
			}
			if len(vs) == 0 {
				merged.Metrics[name] = math.NaN()
				continue
			}
			slices.Sort(vs)
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
		m.Rows = append(m.Rows, merged)
	}
	for _, r := range runs {
		for target, l := range r.curves {
			m.curves[target] = append(m.curves[target], l...)
		}
		for _, v := range r.Verdicts { // a skipped baseline, say
			if !slices.Contains(m.Verdicts, v) {
				m.Verdicts = append(m.Verdicts, v)
			}
		}
	}
	for target, l := range m.curves {
		m.curves[target] = l.sorted()
	}
	return m
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
