package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// perWorker is the most streams one load-generator process opens: a
// process may hold at most 20,000 files here.
const perWorker = 9_000

// idleResult is what one idle worker reports.
type idleResult struct {
	Opened     int    `json:"opened"`
	Failed     int    `json:"failed"`
	EndedEarly int    `json:"endedEarly"`
	Bytes      int64  `json:"bytes"`
	FirstError string `json:"firstError,omitempty"`
}

// idleWorker is the child process: it opens n raw HTTP/1.1 streams (no
// client library: the load generator must stay small), prints READY, holds
// them for hold, then prints its result as JSON and exits.
func idleWorker(args []string) error {
	fs := flag.NewFlagSet("idle-worker", flag.ContinueOnError)
	addr := fs.String("addr", "", "127.0.0.1:port")
	path := fs.String("path", "", "the stream's path")
	header := fs.String("header", "", "one extra request header line")
	n := fs.Int("n", 0, "streams")
	hold := fs.Duration("hold", 10*time.Second, "how long to hold them")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *n > perWorker {
		return fmt.Errorf("at most %d streams per worker", perWorker)
	}
	var res idleResult
	var mu sync.Mutex
	var bytesIn atomic.Int64
	var endedEarly atomic.Int64
	holdUntil := make(chan struct{})
	var open sync.WaitGroup
	var readers sync.WaitGroup
	sem := make(chan struct{}, 128)
	req := fmt.Sprintf("GET %s HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\n", *path, *addr)
	if *header != "" {
		req += *header + "\r\n"
	}
	req += "\r\n"
	for range *n {
		sem <- struct{}{}
		open.Add(1)
		go func() {
			defer open.Done()
			conn, err := openStream(*addr, req)
			<-sem
			mu.Lock()
			if err != nil {
				res.Failed++
				if res.FirstError == "" {
					res.FirstError = err.Error()
				}
				mu.Unlock()
				return
			}
			res.Opened++
			mu.Unlock()
			readers.Add(1)
			go func() {
				defer readers.Done()
				done := make(chan struct{})
				go func() {
					buf := make([]byte, 512)
					for {
						k, err := conn.Read(buf)
						bytesIn.Add(int64(k))
						if err != nil {
							select {
							case <-holdUntil:
							default:
								endedEarly.Add(1)
							}
							close(done)
							return
						}
					}
				}()
				select {
				case <-holdUntil:
				case <-done:
				}
				_ = conn.Close()
			}()
		}()
	}
	open.Wait()
	fmt.Printf("READY %d %d\n", res.Opened, res.Failed)
	time.Sleep(*hold)
	close(holdUntil)
	readers.Wait()
	res.EndedEarly = int(endedEarly.Load())
	res.Bytes = bytesIn.Load()
	b, _ := json.Marshal(res)
	fmt.Printf("DONE %s\n", b)
	return nil
}

// openStream dials from the next source address, sends req and reads the
// response head; it wants a 200.
func openStream(addr, req string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := dialLoopback(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return readHead(conn, req)
}

// readHead sends req on conn and reads the response head; it wants a 200.
func readHead(conn net.Conn, req string) (net.Conn, error) {
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(conn, req); err != nil {
		_ = conn.Close()
		return nil, err
	}
	var head []byte
	buf := make([]byte, 1024)
	for !bytes.Contains(head, []byte("\r\n\r\n")) {
		k, err := conn.Read(buf)
		head = append(head, buf[:k]...)
		if err != nil {
			_ = conn.Close()
			return nil, fmt.Errorf("reading the response head: %w", err)
		}
		if len(head) > 64<<10 {
			_ = conn.Close()
			return nil, fmt.Errorf("response head too long")
		}
	}
	if !bytes.HasPrefix(head, []byte("HTTP/1.1 200")) {
		_ = conn.Close()
		line, _, _ := strings.Cut(string(head), "\r\n")
		return nil, fmt.Errorf("status %q", line)
	}
	_ = conn.SetDeadline(time.Time{})
	return conn, nil
}

// scenarioIdle: idle streams with heartbeats on, held by one server
// process; RSS per stream = (RSS with every stream open − RSS before) / n.
func scenarioIdle(ctx context.Context, e *env) (*Scenario, error) {
	sz := e.size.idle
	s := &Scenario{
		Name: "idle streams, heartbeats on",
		Setup: fmt.Sprintf("streams of one 1-hour job (one progress event per 36 s) held for %s with a 5 s heartbeat, opened by load-generator child processes of ≤ %d raw connections each; "+
			"RSS/stream = (the server's RSS with every stream open − its RSS before) / streams.", sz.hold, perWorker),
		Columns:  []string{"streams", "opened", "failed", "ended early", "RSS/stream KiB", "server RSS MiB", "server FDs", "CPU % (idle)"},
		Baseline: "BFF (this project)",
	}
	be, err := e.backend(ctx, "idle-backend", 4, "-heartbeat", "5s")
	if err != nil {
		return nil, err
	}
	defer be.stop()
	type variant struct {
		name  string
		n     int
		kind  kind
		procs int
	}
	variants := []variant{{"BFF (this project)", sz.bff, kindBFF, 1}, {"backend direct (net/http + gin)", sz.backend, kindBackend, 1}}
	if sz.bffs3 > 0 {
		// A process may hold 20,000 files: past 19,900 streams, several BFFs.
		variants = append(variants, variant{"BFF × 3 processes", sz.bffs3, kindBFF, 3})
	}
	if e.node && sz.express > 0 {
		variants = append(variants, variant{"Express relay (seed)", sz.express, kindExpress, 1})
	}
	c := newHTTPClient(nil)
	for _, v := range variants {
		var srvs []*server
		t := target{kind: v.kind, url: be.url, backend: be.url}
		switch v.kind {
		case kindBFF:
			for i := range v.procs {
				srv, err := e.bff(ctx, fmt.Sprintf("idle-bff-%d", i), be.url, "-heartbeat", "5s")
				if err != nil {
					stopAll(srvs)
					return nil, err
				}
				srvs = append(srvs, srv)
			}
		case kindExpress:
			srv, err := e.express(ctx, "idle-express", be.url)
			if err != nil {
				return nil, err
			}
			srvs = append(srvs, srv)
		default:
			srvs = append(srvs, be)
		}
		t.url = srvs[0].url
		j, err := create(ctx, c, t, createReq{Rows: 100, DurationMs: 3_600_000}, "")
		if err != nil {
			stopAll(srvs)
			return nil, err
		}
		header := ""
		if j.cookie != "" && v.kind == kindBFF {
			header = "Cookie: " + j.cookie // every BFF reads it: they share the session secret
		}
		time.Sleep(500 * time.Millisecond)
		row, err := runIdle(ctx, srvs, strings.TrimPrefix(eventsURL(t, j.code), t.url), header, v.n, sz.hold)
		if v.kind != kindBackend {
			stopAll(srvs)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", v.name, err)
		}
		row.Target = v.name
		s.Rows = append(s.Rows, row)
		logf("  %s: %0.f/%d open, %.1f KiB/stream, %0.f ended early", v.name, row.Metrics["opened"], v.n, row.Metrics["RSS/stream KiB"], row.Metrics["ended early"])
	}
	return s, nil
}

func stopAll(srvs []*server) {
	for _, s := range srvs {
		s.stop()
	}
}

// idleChild is a load-generator process holding idle streams.
type idleChild struct {
	cmd   *exec.Cmd
	lines chan string
}

func startIdleWorker(ctx context.Context, self, addr, path, header string, n int, hold time.Duration) (idleChild, error) {
	cmd := exec.CommandContext(ctx, self, "idle-worker", "-addr", addr, "-path", path, "-header", header,
		"-n", fmt.Sprint(n), "-hold", hold.String())
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return idleChild{}, err
	}
	if err := cmd.Start(); err != nil {
		return idleChild{}, err
	}
	k := idleChild{cmd: cmd, lines: make(chan string, 4)}
	go copyLines(out, k.lines)
	return k, nil
}

// runIdle spreads n streams evenly over srvs, holds them, and reports the
// servers' RSS per stream (all of them together) and the largest one's
// descriptors.
func runIdle(ctx context.Context, srvs []*server, path, header string, n int, hold time.Duration) (*Row, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	before := make([]procSample, len(srvs))
	for i, srv := range srvs {
		before[i], _ = sampleProc(srv.pid())
	}
	var kids []idleChild
	defer func() {
		for _, k := range kids {
			_ = k.cmd.Process.Kill()
			_ = k.cmd.Wait()
		}
	}()
	for si, srv := range srvs {
		ns := n / len(srvs)
		if si < n%len(srvs) {
			ns++
		}
		addr := strings.TrimPrefix(srv.url, "http://")
		workers := (ns + perWorker - 1) / perWorker
		for w := range workers {
			count := ns / workers
			if w < ns%workers {
				count++
			}
			kid, err := startIdleWorker(ctx, self, addr, path, header, count, hold)
			if err != nil {
				return nil, err
			}
			kids = append(kids, kid)
		}
	}
	next := func(k idleChild, prefix string) (string, error) {
		select {
		case l, ok := <-k.lines:
			if !ok {
				return "", fmt.Errorf("idle worker exited before %s", prefix)
			}
			rest, ok := strings.CutPrefix(l, prefix+" ")
			if !ok {
				return "", fmt.Errorf("idle worker said %q, want %s", l, prefix)
			}
			return rest, nil
		case <-time.After(hold + 90*time.Second):
			return "", fmt.Errorf("idle worker: no %s in time", prefix)
		}
	}
	for _, k := range kids {
		if _, err := next(k, "READY"); err != nil {
			return nil, err
		}
	}
	time.Sleep(2 * time.Second) // let the servers settle (GC) before reading their RSS
	var grew, rss int64
	fds := 0
	for i, srv := range srvs {
		open, _ := sampleProc(srv.pid())
		grew += open.rssKiB - before[i].rssKiB
		rss += open.rssKiB
		fds = max(fds, open.fds)
	}
	if len(srvs) == 1 && strings.HasPrefix(srvs[0].name, "idle-bff") {
		grabProfile(fmt.Sprintf("idle-%d-heap.pprof", n), "heap", 30*time.Second)
		grabProfile(fmt.Sprintf("idle-%d-goroutine.txt", n), "goroutine?debug=1", 30*time.Second)
	}
	mon := watch(time.Second, srvs...)
	var total idleResult
	for _, k := range kids {
		rest, err := next(k, "DONE")
		if err != nil {
			return nil, err
		}
		var r idleResult
		if err := json.Unmarshal([]byte(rest), &r); err != nil {
			return nil, err
		}
		total.Opened += r.Opened
		total.Failed += r.Failed
		total.EndedEarly += r.EndedEarly
		total.Bytes += r.Bytes
		if total.FirstError == "" {
			total.FirstError = r.FirstError
		}
	}
	usages := mon.stop()
	cpu := 0.0
	for _, u := range usages {
		cpu += u.CPUPercent
	}
	row := &Row{Metrics: map[string]float64{
		"streams":        float64(n),
		"opened":         float64(total.Opened),
		"failed":         float64(total.Failed),
		"ended early":    float64(total.EndedEarly),
		"RSS/stream KiB": float64(grew) / float64(max(total.Opened, 1)),
		"server RSS MiB": float64(rss) / 1024,
		"server FDs":     float64(fds),
		"CPU % (idle)":   cpu,
	}, Usage: usages}
	if len(srvs) > 1 {
		row.Notes = append(row.Notes, fmt.Sprintf("%d processes: RSS and CPU are their sum, FDs the largest one's", len(srvs)))
	}
	if total.FirstError != "" {
		row.Notes = append(row.Notes, "first error: "+total.FirstError)
	}
	return row, nil
}
