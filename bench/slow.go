package main

import (
	"context"
	"fmt"
	"net"
	"strings"
)

// scenarioSlow: the fan-out with a tenth of the subscribers never reading,
// against the same readers alone. On loopback the kernel queues about
// 1.6 MB for a socket nobody reads before a write would block (measured
// here; a job's whole stream is ~20 kB), so the BFF's writes to them never
// block during a job: what this shows is that holding them costs the
// readers nothing. The blocked-write path (a goroutine per stalled stream,
// cut off at -write-timeout) is tested in bff/internal/stream with
// 64 KiB events.
func scenarioSlow(ctx context.Context, e *env) (*Scenario, error) {
	sz := e.size.slow
	s := &Scenario{
		Name: "slow readers: a tenth of the subscribers never read",
		Setup: fmt.Sprintf("%d reading subscribers of one job, %d rows over %d ms (%s), alone and then with %d more that never read; BFF -write-timeout 2s. The kernel queues ~1.6 MB for an unread loopback socket, more than a job sends, so no BFF write blocks here (cut off: 0 expected).",
			sz.readers, sz.rows, sz.durationMs, eventRate(sz.rows, sz.durationMs), sz.stalled),
		Columns:  []string{"p50 ms", "p99 ms", "max ms", "events/sub min", "events/sub max", "relay RSS MiB", "cut off", "errors"},
		Baseline: "readers alone",
		curves:   map[string]latencies{},
	}
	type variant struct {
		name    string
		stalled int
	}
	for _, v := range ordered(e, []variant{{"readers alone", 0}, {fmt.Sprintf("readers + %d never reading", sz.stalled), sz.stalled}}) {
		row, lat, err := slowPhase(ctx, e, sz.readers, v.stalled, createReq{Rows: sz.rows, DurationMs: sz.durationMs})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", v.name, err)
		}
		row.Target = v.name
		s.Rows = append(s.Rows, row)
		s.curves["slow readers: "+v.name] = lat
		logf("  %s: p99 %.2f ms, %0.f cut off, %0.f errors", v.name, row.Metrics["p99 ms"], row.Metrics["cut off"], row.Metrics["errors"])
	}
	return s, nil
}

// slowPhase runs readers subscribers of one job, and stalled more that
// never read, through a fresh BFF with a 2 s write timeout.
func slowPhase(ctx context.Context, e *env, readers, stalled int, req createReq) (*Row, latencies, error) {
	st, err := e.relayed(ctx, "slow", 1, "-write-timeout", "2s")
	if err != nil {
		return nil, nil, err
	}
	defer st.stop()
	res, err := st.oneJob(readers, stalled, req).run(ctx)
	if err != nil {
		return nil, nil, err
	}
	row := res.row("", st.bff, st.be)
	row.Metrics["cut off"] = metric(newHTTPClient(nil), st.bff.url, "exportstream_bff_slow_disconnects_total")
	row.Metrics["streams stalled"] = float64(stalled)
	return row, res.lat, nil
}

// openStalled opens a stream that is never read.
func openStalled(ctx context.Context, url, header string) (net.Conn, error) {
	addr, path, _ := strings.Cut(strings.TrimPrefix(url, "http://"), "/")
	conn, err := dialLoopback(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	req := fmt.Sprintf("GET /%s HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\n%s\r\n", path, addr, header)
	return readHead(conn, req)
}
