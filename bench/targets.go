package main

import (
	"fmt"
	"math"
	"strings"
)

// scenarioJudges maps a scenario, by the start of its name, to the judge of
// the performance targets it measures. The first prefix that matches wins,
// so "relay:" and "relay overhead" stay apart.
var scenarioJudges = []struct {
	prefix string
	judge  func(judgement)
}{
	{"relay:", judgement.relay},
	{"relay overhead", judgement.relayOverhead},
	{"polling", judgement.polling},
	{"idle users", judgement.idleUsers},
	{"idle streams", judgement.idleStreams},
	{"slow readers", judgement.slowReaders},
	{"fan-out", judgement.fanOut},
	{"spread", judgement.spread},
	{"create", judgement.create},
}

// judge adds a met/missed line for each performance target a scenario
// measures; a scenario that measures none is left as it is.
func judge(s *Scenario) {
	for _, sj := range scenarioJudges {
		if strings.HasPrefix(s.Name, sj.prefix) {
			sj.judge(judgement{s})
			return
		}
	}
}

// judgement adds the verdicts of one scenario to it.
type judgement struct{ s *Scenario }

// rowWithPrefix is the first row whose target starts with prefix, or nil.
func (j judgement) rowWithPrefix(prefix string) *Row {
	for _, r := range j.s.Rows {
		if strings.HasPrefix(r.Target, prefix) {
			return r
		}
	}
	return nil
}

// check adds one verdict: met when ok, "not measured" when v is NaN
// whatever ok says.
func (j judgement) check(what string, v float64, ok bool, target string) {
	verdict := "MISSED"
	if ok {
		verdict = "met"
	}
	if math.IsNaN(v) {
		verdict = "not measured"
	}
	j.s.Verdicts = append(j.s.Verdicts, fmt.Sprintf("%s: %s (%s; target %s)", what, verdict, fmtNum(v), target))
}

// checkCPU adds the verdict on the BFF's CPU per delivery, the same
// bound wherever it is measured.
func (j judgement) checkCPU(where string, m map[string]float64) {
	j.atMost("BFF CPU per delivery"+where, m, "CPU µs/delivery", 8, "≤ 8 µs")
}

// atMost checks that metric of m is at most bound.
func (j judgement) atMost(what string, m map[string]float64, metric string, bound float64, target string) {
	v := m[metric]
	j.check(what, v, v <= bound, target)
}

func (j judgement) relay() {
	r := j.rowWithPrefix("BFF (this")
	if r == nil {
		return
	}
	j.atMost("relay p99 end to end", r.Metrics, "p99 ms", 3, "≤ 3 ms")
	// One multiplexed upstream whatever the codes: 0 would be no relay at
	// all, more one per code or per browser.
	up := r.Metrics["upstream conns"]
	j.check("relay upstream connections", up, up == 1, "= 1 for all the codes")
	j.checkCPU(" (relay)", r.Metrics)
}

func (j judgement) relayOverhead() {
	if r := j.rowWithPrefix("added"); r != nil {
		j.atMost("added p50", r.Metrics, "p50 ms", 0.5, "≤ 0.5 ms")
		j.atMost("added p99", r.Metrics, "p99 ms", 2, "≤ 2 ms")
	}
}

func (j judgement) polling() {
	if r := j.rowWithPrefix("SSE"); r != nil {
		j.atMost("SSE notice delay p99", r.Metrics, "notice p99 ms", 5, "≤ 5 ms")
	}
}

// bffProcesses is how many BFF processes an idle-users row ran on; ok is
// false for a row that is not the BFF's.
func bffProcesses(target string) (procs float64, ok bool) {
	switch {
	case strings.HasPrefix(target, "BFF × 3"):
		return 3, true
	case strings.HasPrefix(target, "BFF"):
		return 1, true
	default:
		return 0, false
	}
}

func (j judgement) idleUsers() {
	for _, r := range j.s.Rows {
		procs, ok := bffProcesses(r.Target)
		if !ok {
			continue
		}
		m := r.Metrics
		where := fmt.Sprintf("%0.f users over %0.f BFF process(es)", m["users"], procs)
		bad := m["failed"] + m["ended early"]
		j.check("errors over the hold, "+where, bad, bad == 0, "0; 19,900 users in one BFF and 50,000 in three at full size")
		j.atMost("BFF + backend memory per user, "+where, m, "total KiB/user", 6, "≤ 6 KiB")
		up := m["upstream streams"]
		j.check("backend event streams, "+where, up, up == procs, "one per BFF, whatever the users")
		// The BFF's pool to the backend, its stream included, is bounded
		// (BACKEND_MAX_CONNS, 32): connections never grow with users.
		conns := m["backend conns"]
		j.check("connections to the backend, "+where, conns, conns <= 32*procs, "≤ 32 per BFF (BACKEND_MAX_CONNS), whatever the users")
	}
}

func (j judgement) idleStreams() {
	r := j.rowWithPrefix("BFF")
	if r == nil {
		return
	}
	j.atMost("BFF RSS per idle stream (best case)", r.Metrics, "RSS/stream KiB", 8, "≤ 8 KiB")
	bad := r.Metrics["failed"] + r.Metrics["ended early"]
	j.check(fmt.Sprintf("errors over the hold (%0.f streams in one BFF)", r.Metrics["streams"]), bad, bad == 0, "0; 19,900 streams in one process at full size")
}

func (j judgement) slowReaders() {
	aloneRow, withRow := j.rowWithPrefix("readers alone"), j.rowWithPrefix("readers +")
	if aloneRow == nil || withRow == nil {
		return
	}
	alone, with := aloneRow.Metrics, withRow.Metrics
	r := with["p99 ms"] / alone["p99 ms"]
	j.check("readers' p99 with never-readers / without", r, r <= 1.2, "≤ 1.2")
	kib := (with["relay RSS MiB"] - alone["relay RSS MiB"]) * 1024 / math.Max(with["streams stalled"], 1)
	j.check("BFF memory per never-reading stream", kib, kib <= 64, "bounded: ≤ 64 KiB (a blocked batch and a goroutine until the write timeout)")
}

func (j judgement) fanOut() {
	r := j.s.Rows[0]
	if r == nil {
		return
	}
	j.atMost("fan-out p99", r.Metrics, "p99 ms", 150, "≤ 150 ms")
	lo, hi := r.Metrics["events/sub min"], r.Metrics["events/sub max"]
	j.check("no subscriber starved (fewest events / most)", lo/math.Max(hi, 1), lo > 0 && lo >= 0.9*hi, "≥ 0.9")
	j.checkCPU(" (fan-out)", r.Metrics)
}

func (j judgement) spread() {
	for _, r := range j.s.Rows {
		if !strings.HasPrefix(r.Target, "BFF") {
			continue
		}
		what := strings.TrimPrefix(r.Target, "BFF, ")
		j.atMost("spread p99, "+what, r.Metrics, "p99 ms", 10, "≤ 10 ms")
		j.checkCPU(", "+what, r.Metrics)
		if strings.Contains(what, "subscribers") {
			j.spreadSustained(what, r.Metrics)
		}
	}
}

// spreadSustained: the full-size shape offers exactly 50,000/s; sustained
// means every offered event delivered to every subscriber, received at the
// offered rate in steady state (1 % for a second's edges).
func (j judgement) spreadSustained(what string, m map[string]float64) {
	d := m["steady received/s"]
	all := m["events/sub min"] == m["events/sub max"]
	j.check("received/s sustained (median whole second, every event delivered), "+what, d, d >= 0.99*50_000 && all, "≥ 50,000/s offered (short size offers less)")
}

func (j judgement) create() {
	r := j.s.Rows[0]
	if r == nil {
		return
	}
	j.check("create throughput", r.Metrics["jobs/s"], r.Metrics["jobs/s"] >= 5000, "≥ 5,000 jobs/s")
	j.atMost("create p99", r.Metrics, "p99 ms", 20, "≤ 20 ms")
}
