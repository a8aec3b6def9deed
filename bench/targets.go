package main

import (
	"fmt"
	"math"
	"strings"
)

// judge adds a met/missed line for each target of issue 8 a scenario measures.
func judge(s *Scenario) {
	row := func(prefix string) *Row {
		for _, r := range s.Rows {
			if strings.HasPrefix(r.Target, prefix) {
				return r
			}
		}
		return nil
	}
	check := func(what string, v float64, ok bool, target string) {
		verdict := "MISSED"
		if ok {
			verdict = "met"
		}
		if math.IsNaN(v) {
			verdict = "not measured"
		}
		s.Verdicts = append(s.Verdicts, fmt.Sprintf("%s: %s (%s; target %s)", what, verdict, fmtNum(v), target))
	}
	switch {
	case strings.HasPrefix(s.Name, "relay:"):
		if r := row("BFF (this"); r != nil {
			p99 := r.Metrics["p99 ms"]
			check("relay p99 end to end", p99, p99 <= 8, "≤ 8 ms")
			// Exactly one upstream per code: fewer means codes were never
			// relayed (0 would be no relay at all), more means one per browser.
			up, codes := r.Metrics["upstream conns"], s.jobs()
			check("relay upstream connections", up, codes > 0 && up == float64(codes), fmt.Sprintf("= %d codes", codes))
			cpu := r.Metrics["CPU µs/delivery"]
			check("BFF CPU per delivery (relay)", cpu, cpu <= 8, "≤ 8 µs")
		}
	case strings.HasPrefix(s.Name, "relay overhead"):
		if r := row("added"); r != nil {
			check("added p50", r.Metrics["p50 ms"], r.Metrics["p50 ms"] <= 0.5, "≤ 0.5 ms")
			check("added p99", r.Metrics["p99 ms"], r.Metrics["p99 ms"] <= 2, "≤ 2 ms")
		}
	case strings.HasPrefix(s.Name, "polling"):
		if r := row("SSE"); r != nil {
			check("SSE notice delay p99", r.Metrics["notice p99 ms"], r.Metrics["notice p99 ms"] <= 5, "≤ 5 ms")
		}
	case strings.HasPrefix(s.Name, "idle"):
		if r := row("BFF"); r != nil {
			kib := r.Metrics["RSS/stream KiB"]
			check("BFF RSS per idle stream", kib, kib <= 8, "≤ 8 KiB")
			bad := r.Metrics["failed"] + r.Metrics["ended early"]
			check(fmt.Sprintf("errors over the hold (%0.f streams in one BFF)", r.Metrics["streams"]), bad, bad == 0, "0; 19,900 streams in one process at full size")
		}
		if r := row("BFF × 3"); r != nil {
			bad := r.Metrics["failed"] + r.Metrics["ended early"]
			check(fmt.Sprintf("errors over the hold (%0.f streams in three BFFs)", r.Metrics["streams"]), bad, bad == 0, "0; 50,000 streams at full size")
			kib := r.Metrics["RSS/stream KiB"]
			check("RSS per idle stream, three BFFs", kib, kib <= 8, "≤ 8 KiB")
		}
	case strings.HasPrefix(s.Name, "slow readers"):
		if len(s.Rows) == 2 {
			alone, with := s.Rows[0].Metrics, s.Rows[1].Metrics
			r := with["p99 ms"] / alone["p99 ms"]
			check("readers' p99 with never-readers / without", r, r <= 1.2, "≤ 1.2")
			kib := (with["relay RSS MiB"] - alone["relay RSS MiB"]) * 1024 / math.Max(with["streams stalled"], 1)
			check("BFF memory per never-reading stream", kib, kib <= 64, "bounded: ≤ 64 KiB (a blocked batch and a goroutine until the write timeout)")
		}
	case strings.HasPrefix(s.Name, "fan-out"):
		if r := s.Rows[0]; r != nil {
			check("fan-out p99", r.Metrics["p99 ms"], r.Metrics["p99 ms"] <= 150, "≤ 150 ms")
			lo, hi := r.Metrics["events/sub min"], r.Metrics["events/sub max"]
			check("no subscriber starved (fewest events / most)", lo/math.Max(hi, 1), lo > 0 && lo >= 0.9*hi, "≥ 0.9")
			cpu := r.Metrics["CPU µs/delivery"]
			check("BFF CPU per delivery (fan-out)", cpu, cpu <= 8, "≤ 8 µs")
		}
	case strings.HasPrefix(s.Name, "spread"):
		if r := s.Rows[0]; r != nil {
			// The scenario offers exactly 50,000/s at full size: sustained
			// means every offered event delivered to every subscriber, at
			// the offered rate in steady state (1 % for a second's edges).
			d := r.Metrics["steady deliveries/s"]
			all := r.Metrics["events/sub min"] == r.Metrics["events/sub max"]
			check("spread deliveries/s sustained (median whole second, every event delivered)", d, d >= 0.99*50_000 && all, "≥ 50,000/s offered (short size offers less)")
			check("spread p99", r.Metrics["p99 ms"], r.Metrics["p99 ms"] <= 10, "≤ 10 ms")
			cpu := r.Metrics["CPU µs/delivery"]
			check("BFF CPU per delivery (spread)", cpu, cpu <= 8, "≤ 8 µs")
		}
	case strings.HasPrefix(s.Name, "create"):
		if r := s.Rows[0]; r != nil {
			check("create throughput", r.Metrics["jobs/s"], r.Metrics["jobs/s"] >= 5000, "≥ 5,000 jobs/s")
			check("create p99", r.Metrics["p99 ms"], r.Metrics["p99 ms"] <= 20, "≤ 20 ms")
		}
	}
}

// jobs reads the number of codes back out of the setup line.
func (s *Scenario) jobs() int {
	var subs, jobs int
	_, _ = fmt.Sscanf(s.Setup, "%d subscribers on %d codes", &subs, &jobs)
	return jobs
}
