package main

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The committed runs are the reports' fixtures: the markdown of each
// results/<date>.json is its results/<date>.md byte for byte, and merging
// the runs it holds gives the rows it holds.
func TestEachCommittedRunRendersAsItsCommittedReport(t *testing.T) {
	files, err := filepath.Glob("results/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no committed runs in results/ (%v)", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			res := readResults(t, f)
			want, err := os.ReadFile(strings.TrimSuffix(f, ".json") + ".md")
			if err != nil {
				t.Fatal(err)
			}
			if got := res.markdown(); got != string(want) {
				t.Errorf("markdown differs from the committed report:\n%s", got)
			}
		})
	}
}

func TestMergingTheRunsOfACommittedRunGivesItsRows(t *testing.T) {
	files, err := filepath.Glob("results/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no committed runs in results/ (%v)", err)
	}
	for _, f := range files {
		res := readResults(t, f)
		if len(res.EachRun) < 2 {
			continue
		}
		for _, s := range res.Scenarios {
			var runs []*Scenario
			for _, run := range res.EachRun {
				for _, r := range run {
					if r.Name == s.Name {
						runs = append(runs, r)
					}
				}
			}
			m := mergeRuns(runs)
			if got, want := mustJSON(t, m.Rows), mustJSON(t, s.Rows); got != want {
				t.Errorf("%s, %s: merged rows\n%s\nwant\n%s", f, s.Name, got, want)
			}
			// judge appends to the verdicts the runs carried.
			if m.Runs != len(runs) || !slices.Equal(m.Verdicts, s.Verdicts[:min(len(m.Verdicts), len(s.Verdicts))]) {
				t.Errorf("%s, %s: runs %d, verdicts %q: want %d and a start of %q", f, s.Name, m.Runs, m.Verdicts, len(runs), s.Verdicts)
			}
		}
	}
}

// The pooled latency curve of a target holds every run's samples, sorted.
func TestMergingRunsPoolsTheirLatencies(t *testing.T) {
	runs := []*Scenario{
		{Rows: []*Row{{Target: "a"}}, curves: map[string]latencies{"a": {5, 9}}},
		{Rows: []*Row{{Target: "a"}}, curves: map[string]latencies{"a": {1, 7}, "b": {3}}},
	}
	m := mergeRuns(runs)
	if !slices.Equal(m.curves["a"], latencies{1, 5, 7, 9}) || !slices.Equal(m.curves["b"], latencies{3}) {
		t.Errorf("curves %v", m.curves)
	}
}

// decodedRow reads a Row back: a metric written as null (not measured)
// is NaN again.
type decodedRow struct {
	Row
	Metrics map[string]*float64 `json:"metrics"`
}

type decodedScenario struct {
	Scenario
	Rows []*decodedRow `json:"rows"`
}

func readResults(t *testing.T, path string) *Results {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Results
		Scenarios []*decodedScenario   `json:"scenarios"`
		EachRun   [][]*decodedScenario `json:"eachRun"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	res := d.Results
	res.Scenarios = scenarios(d.Scenarios)
	for _, run := range d.EachRun {
		res.EachRun = append(res.EachRun, scenarios(run))
	}
	return &res
}

func scenarios(ds []*decodedScenario) []*Scenario {
	var out []*Scenario
	for _, d := range ds {
		s := d.Scenario
		for _, dr := range d.Rows {
			r := dr.Row
			r.Metrics = make(map[string]float64, len(dr.Metrics))
			for k, v := range dr.Metrics {
				r.Metrics[k] = math.NaN()
				if v != nil {
					r.Metrics[k] = *v
				}
			}
			s.Rows = append(s.Rows, &r)
		}
		out = append(out, &s)
	}
	return out
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
