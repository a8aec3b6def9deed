package campaign

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Result is one seed's line in the results file (JSON lines, appended).
type Result struct {
	Seed            uint64         `json:"seed"`
	Topology        Topology       `json:"topology"`
	DurationSeconds float64        `json:"durationSeconds"`
	Time            time.Time      `json:"time"`
	ElapsedSeconds  float64        `json:"elapsedSeconds"`
	Commit          string         `json:"commit,omitempty"`
	ScheduleHash    string         `json:"scheduleHash"` // the full schedule's: a changed generator reruns the seed
	Passed          bool           `json:"passed"`
	Error           string         `json:"error,omitempty"` // the run could not be made (not a violation)
	Faults          map[string]int `json:"faults"`          // injected, by kind
	FaultsSkipped   map[string]int `json:"faultsSkipped,omitempty"`
	Ops             map[string]int `json:"ops"`         // operations checked, by kind
	Subscribers     map[string]int `json:"subscribers"` // by kind
	Events          int            `json:"events"`
	Violations      map[string]int `json:"violations,omitempty"` // by rule
	Examples        []string       `json:"examples,omitempty"`   // the first violations
	Schedule        []string       `json:"schedule,omitempty"`   // when failed: the faults injected
	Minimal         []string       `json:"minimal,omitempty"`    // when failed: the shrunk schedule
	ShrinkRuns      int            `json:"shrinkRuns,omitempty"`
	Replay          string         `json:"replay,omitempty"`
	LogDir          string         `json:"logDir,omitempty"`
}

// Summarize turns an outcome into a Result.
func Summarize(o *Outcome, d time.Duration) Result {
	h := o.History
	r := Result{
		Seed: h.Seed, Topology: h.Topology, DurationSeconds: d.Seconds(), Time: h.Start, ElapsedSeconds: o.Elapsed.Seconds(),
		Passed: !o.Failed(), Faults: map[string]int{}, FaultsSkipped: map[string]int{}, Ops: map[string]int{},
		Subscribers: map[string]int{}, Violations: map[string]int{}, LogDir: o.Dir,
	}
	for _, f := range h.Faults {
		if f.Skipped != "" {
			r.FaultsSkipped[f.Fault.Kind]++
		} else {
			r.Faults[f.Fault.Kind]++
		}
	}
	for _, op := range h.Ops {
		r.Ops[op.Kind]++
	}
	for _, s := range h.Subs {
		r.Subscribers[s.Kind]++
		for _, c := range s.Conns {
			r.Events += len(c.Events)
		}
	}
	for i, v := range o.Violations {
		r.Violations[v.Rule]++
		if i < 10 {
			r.Examples = append(r.Examples, v.String())
		}
	}
	if o.Failed() {
		for _, f := range o.Schedule {
			r.Schedule = append(r.Schedule, f.String())
		}
	}
	return r
}

// LoadResults reads a results file; a missing file is empty.
func LoadResults(path string) ([]Result, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("results: %w", err)
	}
	defer func() { _ = f.Close() }()
	var out []Result
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		var r Result
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return nil, fmt.Errorf("results %s: %w", path, err)
		}
		out = append(out, r)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("results %s: %w", path, err)
	}
	return out, nil
}

// AppendResult adds r to the results file.
func AppendResult(path string, r Result) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("results: %w", err)
	}
	b, err := json.Marshal(r)
	if err != nil {
		_ = f.Close()
		return fmt.Errorf("results: %w", err)
	}
	_, err = f.Write(append(b, '\n'))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("results: %w", err)
	}
	return nil
}

// ok reports a seed that ran and passed.
func (r Result) ok() bool { return r.Passed && r.Error == "" }

// verdictWords are how a table writes a result: passed, could not run
// (before the error), failed (before the violations by rule).
type verdictWords struct{ pass, err, fail string }

var (
	tableWords    = verdictWords{pass: "PASS", err: "ERROR: ", fail: "FAIL "}
	markdownWords = verdictWords{pass: "pass", err: "error: ", fail: "**FAIL** "}
)

func (r Result) verdict(w verdictWords) string {
	switch {
	case r.Error != "":
		return w.err + r.Error
	case !r.Passed:
		return w.fail + compact(r.Violations)
	}
	return w.pass
}

// tally sums results.
type tally struct {
	faults, ops, subs, violations map[string]int
	events, passed                int
	topologies                    map[Topology]int
}

func newTally() *tally {
	return &tally{faults: map[string]int{}, ops: map[string]int{}, subs: map[string]int{}, violations: map[string]int{}, topologies: map[Topology]int{}}
}

func (t *tally) add(r Result) {
	addAll(t.faults, r.Faults)
	addAll(t.ops, r.Ops)
	addAll(t.subs, r.Subscribers)
	addAll(t.violations, r.Violations)
	t.events += r.Events
	t.topologies[r.Topology]++
	if r.ok() {
		t.passed++
	}
}

// PrintTable writes one row per result and a total.
func PrintTable(w io.Writer, rs []Result) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	_, _ = fmt.Fprintln(tw, "seed\ttopo\tfaults\tops\tsubs\tevents\tviolations\tresult\telapsed")
	tot := newTally()
	for _, r := range rs {
		_, _ = fmt.Fprintf(tw, "%d\t%s\t%d\t%d\t%d\t%d\t%d\t%s\t%.0fs\n", r.Seed, r.Topology, sum(r.Faults), sum(r.Ops), sum(r.Subscribers), r.Events, sum(r.Violations), r.verdict(tableWords), r.ElapsedSeconds)
		tot.add(r)
	}
	_, _ = fmt.Fprintf(tw, "total\t%d seeds\t%d\t%d\t%d\t%d\t%d\t%d passed\t\n", len(rs), sum(tot.faults), sum(tot.ops), sum(tot.subs), tot.events, sum(tot.violations), tot.passed)
	_ = tw.Flush()
	_, _ = fmt.Fprintf(w, "faults by kind: %s\nops by kind: %s\nviolations by rule: %s\n", compact(tot.faults), compact(tot.ops), compact(tot.violations))
}

// WriteSummary writes a Markdown summary of every result in the file, for
// RELIABILITY.md to cite.
func WriteSummary(path string, rs []Result) error {
	var b strings.Builder
	b.WriteString("# Fault campaign results\n\n")
	b.WriteString("Written by `make chaos` (`go run ./chaos`) from `chaos/results/results.jsonl`; one line per seed run there.\n")
	b.WriteString("How the campaign works and what each rule means: `chaos/README.md`.\n\n")
	tot := newTally()
	for _, r := range rs {
		tot.add(r)
	}
	fmt.Fprintf(&b, "| | |\n|---|---|\n| seed runs | %d (topology A: %d, B: %d), %d passed |\n", len(rs), tot.topologies[TopologyA], tot.topologies[TopologyB], tot.passed)
	fmt.Fprintf(&b, "| faults injected | %d: %s |\n", sum(tot.faults), compact(tot.faults))
	fmt.Fprintf(&b, "| operations checked | %d: %s |\n", sum(tot.ops), compact(tot.ops))
	fmt.Fprintf(&b, "| subscribers | %d: %s; %d events checked |\n", sum(tot.subs), compact(tot.subs), tot.events)
	fmt.Fprintf(&b, "| violations | %d: %s |\n\n", sum(tot.violations), compact(tot.violations))
	b.WriteString("## Runs\n\n| seed | topology | faults s | time | commit | faults | ops | events | result |\n|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rs {
		fmt.Fprintf(&b, "| %d | %s | %.0f | %s | %s | %d | %d | %d | %s |\n", r.Seed, r.Topology, r.DurationSeconds,
			r.Time.UTC().Format("2006-01-02 15:04"), r.Commit, sum(r.Faults), sum(r.Ops), r.Events, r.verdict(markdownWords))
	}
	var failing []Result
	for _, r := range rs {
		if !r.Passed && r.Error == "" {
			failing = append(failing, r)
		}
	}
	if len(failing) > 0 {
		b.WriteString("\n## Failures\n")
		for _, r := range failing {
			fmt.Fprintf(&b, "\n### seed %d, topology %s (%s)\n\nReplay: `%s`\n\n", r.Seed, r.Topology, r.Time.UTC().Format(time.DateTime), r.Replay)
			if len(r.Minimal) > 0 {
				fmt.Fprintf(&b, "Minimal schedule (%d shrink runs):\n\n", r.ShrinkRuns)
				for _, f := range r.Minimal {
					fmt.Fprintf(&b, "- %s\n", f)
				}
				b.WriteString("\n")
			}
			b.WriteString("Violations:\n\n")
			for _, e := range r.Examples {
				fmt.Fprintf(&b, "- %s\n", strings.ReplaceAll(e, "|", "\\|"))
			}
		}
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("summary: %w", err)
	}
	return nil
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func addAll(dst, src map[string]int) {
	for k, v := range src {
		dst[k] += v
	}
}

func compact(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}
