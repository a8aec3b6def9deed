package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"slices"
	"strings"
)

// latencies is a sorted set of samples in microseconds.
type latencies []int32

func (l latencies) sorted() latencies {
	c := slices.Clone(l)
	slices.Sort(c)
	return c
}

// pct returns the p-th percentile (0–100) in milliseconds of sorted l.
func (l latencies) pct(p float64) float64 {
	if len(l) == 0 {
		return math.NaN()
	}
	i := int(math.Ceil(p/100*float64(len(l)))) - 1
	i = min(max(i, 0), len(l)-1)
	return float64(l[i]) / 1000
}

func (l latencies) mean() float64 {
	if len(l) == 0 {
		return math.NaN()
	}
	var s float64
	for _, v := range l {
		s += float64(v)
	}
	return s / float64(len(l)) / 1000
}

// Row is one target's figures in a scenario.
type Row struct {
	Target  string             `json:"target"`
	Metrics map[string]float64 `json:"metrics"`
	Notes   []string           `json:"notes,omitempty"`
	Usage   map[string]usage   `json:"usage,omitempty"`
	// Spread: the lowest and highest of each metric over the runs, when
	// Metrics holds their medians (-runs).
	Spread map[string][2]float64 `json:"spread,omitempty"`
}

// MarshalJSON writes a metric that could not be measured (NaN, ±Inf) as
// null: encoding/json refuses those values, and one would lose the file.
func (r *Row) MarshalJSON() ([]byte, error) {
	metrics := make(map[string]*float64, len(r.Metrics))
	for k, v := range r.Metrics {
		if !math.IsNaN(v) && !math.IsInf(v, 0) {
			metrics[k] = &v
		} else {
			metrics[k] = nil
		}
	}
	type plain Row // without this method
	return json.Marshal(struct {
		*plain
		Metrics map[string]*float64 `json:"metrics"`
	}{(*plain)(r), metrics})
}

// Scenario is one scenario's table, with the targets side by side.
type Scenario struct {
	Name     string   `json:"name"`
	Setup    string   `json:"setup"`
	Columns  []string `json:"columns"` // metric names in table order
	Baseline string   `json:"baseline,omitempty"`
	Rows     []*Row   `json:"rows"`
	Verdicts []string `json:"verdicts,omitempty"`
	Runs     int      `json:"runs,omitempty"` // > 1: rows hold medians over this many runs
	// curves: target → sorted latencies (µs), for the CDF plot; not in JSON.
	curves map[string]latencies
}

// Results is the whole run.
type Results struct {
	Date      string      `json:"date"`
	Size      string      `json:"size"`
	Machine   string      `json:"machine"`
	LoadStart string      `json:"loadAvgStart"`
	LoadEnd   string      `json:"loadAvgEnd"`
	Seconds   float64     `json:"seconds"`
	Runs      int         `json:"runs"`
	Scenarios []*Scenario `json:"scenarios"`
	// EachRun: every run's own figures, in the order run (-runs > 1).
	EachRun [][]*Scenario `json:"eachRun,omitempty"`
}

func fmtNum(v float64) string {
	switch {
	case math.IsNaN(v):
		return "–"
	case v == math.Trunc(v) && math.Abs(v) < 1e9:
		return fmt.Sprintf("%.0f", v)
	case math.Abs(v) >= 100:
		return fmt.Sprintf("%.0f", v)
	case math.Abs(v) >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

// markdown renders each scenario as a table; when a baseline row is named,
// every other row's figures get "(×r)" against it.
func (r *Results) markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Run %s, size %s, %s; load average %s at start, %s at end; %.0f s.\n\n", r.Date, r.Size, r.Machine, r.LoadStart, r.LoadEnd, r.Seconds)
	if r.Runs > 1 {
		fmt.Fprintf(&b, "Every scenario ran %d times, the order of its variants reversed on every other run; each figure is the median over the runs, with the lowest and highest in brackets.\n\n", r.Runs)
	}
	for _, s := range r.Scenarios {
		s.writeMarkdown(&b)
	}
	return b.String()
}

// writeMarkdown writes s's heading, setup, table, notes and verdicts.
func (s *Scenario) writeMarkdown(b *strings.Builder) {
	fmt.Fprintf(b, "### %s\n\n%s\n\n", s.Name, s.Setup)
	fmt.Fprintf(b, "| target | %s |\n|---|%s\n", strings.Join(s.Columns, " | "), strings.Repeat("---|", len(s.Columns)))
	base := s.baselineRow()
	for _, row := range s.Rows {
		cells := []string{row.Target}
		for _, c := range s.Columns {
			cells = append(cells, cell(row, base, c))
		}
		fmt.Fprintf(b, "| %s |\n", strings.Join(cells, " | "))
	}
	for _, row := range s.Rows {
		for _, n := range row.Notes {
			fmt.Fprintf(b, "\n- %s: %s", row.Target, n)
		}
	}
	if base != nil {
		fmt.Fprintf(b, "\n\n(×r) = this target's figure / %s's.", s.Baseline)
	}
	for _, v := range s.Verdicts {
		fmt.Fprintf(b, "\n- **%s**", v)
	}
	b.WriteString("\n\n")
}

// baselineRow is the (last) row of s's baseline target, or nil.
func (s *Scenario) baselineRow() *Row {
	var base *Row
	for _, row := range s.Rows {
		if row.Target == s.Baseline {
			base = row
		}
	}
	return base
}

// cell is row's figure in column c: "–" when absent or not measured, the
// spread over the runs in brackets when it has one, and "(×r)" against
// base when there is a baseline and row is not it.
func cell(row, base *Row, c string) string {
	v, ok := row.Metrics[c]
	if !ok {
		return "–"
	}
	text := fmtNum(v)
	if sp, ok := row.Spread[c]; ok && sp[0] != sp[1] {
		text += fmt.Sprintf(" [%s–%s]", fmtNum(sp[0]), fmtNum(sp[1]))
	}
	if base == nil || row == base {
		return text
	}
	if bv, ok := base.Metrics[c]; ok && bv != 0 && !math.IsNaN(bv) && !math.IsNaN(v) {
		text += fmt.Sprintf(" (×%s)", fmtNum(v/bv))
	}
	return text
}

// cdfSVG draws the latency CDFs of the given scenarios, one line per
// target, on a log-scale x axis (ms) from 0.1 ms to 10 s.
func cdfSVG(scenarios []*Scenario) string {
	const (
		w, h                   = 960, 480
		left, right, top, bott = 70, 350, 40, 60
		minLog, maxLog         = -1.0, 4.0 // 0.1 ms … 10 s
	)
	pw, ph := float64(w-left-right), float64(h-top-bott)
	x := func(ms float64) float64 {
		l := math.Log10(math.Max(ms, 0.1))
		l = math.Min(l, maxLog)
		return float64(left) + (l-minLog)/(maxLog-minLog)*pw
	}
	y := func(q float64) float64 { return float64(top) + (1-q)*ph }
	colors := []string{"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"}
	dashes := []string{"", "6,3", "2,2", "8,3,2,3"}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", w, h, w, h)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", w, h)
	fmt.Fprintf(&b, `<text x="%d" y="22" font-size="15">Event delivery latency CDF (backend updatedAt → receipt)</text>`+"\n", left)
	for d := minLog; d <= maxLog; d++ {
		xx := x(math.Pow(10, d))
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%.1f" stroke="#ddd"/>`+"\n", xx, top, xx, y(0))
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%g</text>`+"\n", xx, y(0)+18, math.Pow(10, d))
	}
	for _, q := range []float64{0, 0.25, 0.5, 0.75, 0.9, 1} { // 0.99 would overprint 1
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#eee"/>`+"\n", left, y(q), float64(left)+pw, y(q))
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%g</text>`+"\n", left-6, y(q)+4, q)
	}
	fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">latency, ms (log scale)</text>`+"\n", float64(left)+pw/2, h-15)
	fmt.Fprintf(&b, `<text x="18" y="%.1f" transform="rotate(-90 18 %.1f)" text-anchor="middle">fraction of events</text>`+"\n", y(0.5), y(0.5))
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.0f" height="%.0f" fill="none" stroke="#333"/>`+"\n", left, top, pw, ph)
	line := 0
	for si, s := range scenarios {
		for _, row := range s.Rows {
			l, ok := s.curves[row.Target]
			if !ok || len(l) == 0 {
				continue
			}
			var pts strings.Builder
			n := len(l)
			step := max(1, n/400)
			for i := 0; i < n; i += step {
				fmt.Fprintf(&pts, "%.1f,%.1f ", x(float64(l[i])/1000), y(float64(i+1)/float64(n)))
			}
			fmt.Fprintf(&pts, "%.1f,%.1f", x(float64(l[n-1])/1000), y(1))
			c := colors[line%len(colors)]
			dash := dashes[si%len(dashes)]
			fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" stroke-dasharray="%s" points="%s"/>`+"\n", c, dash, pts.String())
			ly := top + 14 + line*18
			fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="2" stroke-dasharray="%s"/>`+"\n", w-right+10, ly-4, w-right+34, ly-4, c, dash)
			fmt.Fprintf(&b, `<text x="%d" y="%d">%s: %s</text>`+"\n", w-right+40, ly, shortName(s.Name), row.Target)
			line++
		}
	}
	b.WriteString("</svg>\n")
	return b.String()
}

func shortName(s string) string {
	if i := strings.IndexAny(s, ":("); i > 0 {
		return strings.TrimSpace(s[:i])
	}
	return s
}

func writeFile(path, content string) error { return os.WriteFile(path, []byte(content), 0o644) }
