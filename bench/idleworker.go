package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
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
	// OpenSeconds: from starting the children to every stream open (or failed).
	OpenSeconds float64 `json:"-"`
}

// idleWorker is the child process: it opens one raw HTTP/1.1 stream (no
// client library: the load generator must stay small) per line of its
// streams file, prints READY, holds them for hold, then prints its result
// as JSON and exits.
func idleWorker(args []string) error {
	fs := flag.NewFlagSet("idle-worker", flag.ContinueOnError)
	addr := fs.String("addr", "", "127.0.0.1:port")
	file := fs.String("streams", "", "a file of streams, one per line: the path, a tab, one extra request header line (or none)")
	hold := fs.Duration("hold", 10*time.Second, "how long to hold them")
	if err := fs.Parse(args); err != nil {
		return err
	}
	b, err := os.ReadFile(*file)
	if err != nil {
		return err
	}
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(lines) > perWorker {
		return fmt.Errorf("at most %d streams per worker", perWorker)
	}
	h := &idleHolder{addr: *addr, holdUntil: make(chan struct{}), sem: make(chan struct{}, 128)}
	for _, line := range lines {
		h.sem <- struct{}{}
		h.opening.Add(1)
		go h.open(streamRequest(*addr, line))
	}
	h.opening.Wait()
	fmt.Printf("READY %d %d\n", h.res.Opened, h.res.Failed)
	time.Sleep(*hold)
	res := h.release()
	out, _ := json.Marshal(res)
	fmt.Printf("DONE %s\n", out)
	return nil
}

// streamRequest is the GET of an idle-worker's streams-file line: the
// path, a tab, one extra request header line (or none).
func streamRequest(addr, line string) string {
	path, header, _ := strings.Cut(line, "\t")
	req := fmt.Sprintf("GET %s HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\n", path, addr)
	if header != "" {
		req += header + "\r\n"
	}
	return req + "\r\n"
}

// idleHolder opens idle streams, at most cap(sem) at once, and holds them
// until release, reading whatever they bring.
type idleHolder struct {
	addr      string
	sem       chan struct{}
	holdUntil chan struct{} // closed by release
	opening   sync.WaitGroup
	readers   sync.WaitGroup

	mu         sync.Mutex
	res        idleResult // Opened, Failed and FirstError, under mu
	bytesIn    atomic.Int64
	endedEarly atomic.Int64
}

// open opens one stream with req and, if it opened, holds it.
func (h *idleHolder) open(req string) {
	defer h.opening.Done()
	conn, err := openStream(h.addr, req)
	<-h.sem
	h.mu.Lock()
	defer h.mu.Unlock()
	if err != nil {
		h.res.Failed++
		if h.res.FirstError == "" {
			h.res.FirstError = err.Error()
		}
		return
	}
	h.res.Opened++
	h.readers.Add(1)
	go h.hold(conn)
}

// hold reads conn until release, then closes it; a stream that ends
// before counts as ended early.
func (h *idleHolder) hold(conn net.Conn) {
	defer h.readers.Done()
	done := make(chan struct{})
	go h.drain(conn, done)
	select {
	case <-h.holdUntil:
	case <-done:
	}
	_ = conn.Close()
}

// drain reads conn until it fails, then closes done.
func (h *idleHolder) drain(conn net.Conn, done chan<- struct{}) {
	defer close(done)
	buf := make([]byte, 512)
	for {
		k, err := conn.Read(buf)
		h.bytesIn.Add(int64(k))
		if err != nil {
			select {
			case <-h.holdUntil:
			default:
				h.endedEarly.Add(1)
			}
			return
		}
	}
}

// release ends the hold, closes every stream and returns what they saw.
func (h *idleHolder) release() idleResult {
	close(h.holdUntil)
	h.readers.Wait()
	h.res.EndedEarly = int(h.endedEarly.Load())
	h.res.Bytes = h.bytesIn.Load()
	return h.res
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

// idleChild is a load-generator process holding idle streams.
type idleChild struct {
	cmd   *exec.Cmd
	lines chan string
}

func startIdleWorker(ctx context.Context, self, addr, streamsFile string, hold time.Duration) (idleChild, error) {
	cmd := exec.CommandContext(ctx, self, "idle-worker", "-addr", addr, "-streams", streamsFile, "-hold", hold.String())
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

// idleGroup is the streams one server gets: each a path, a tab and one
// extra request header line (or none).
type idleGroup struct {
	srv     *server
	streams []string
}

// runIdle opens every group's streams on its server from child processes
// (≤ perWorker each), calls atPeak once all are open, holds them for hold,
// and returns what the children saw and the servers' usage over the hold.
func runIdle(ctx context.Context, groups []idleGroup, hold time.Duration, atPeak func()) (idleResult, map[string]usage, error) {
	var total idleResult
	self, err := os.Executable()
	if err != nil {
		return total, nil, err
	}
	dir, err := os.MkdirTemp("", "exportstream-idle-")
	if err != nil {
		return total, nil, err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	var kids []idleChild
	defer func() {
		for _, k := range kids {
			_ = k.cmd.Process.Kill()
			_ = k.cmd.Wait()
		}
	}()
	var srvs []*server
	began := time.Now()
	for gi, g := range groups {
		srvs = append(srvs, g.srv)
		addr := strings.TrimPrefix(g.srv.url, "http://")
		for w, chunk := range chunks(g.streams, perWorker) {
			f := filepath.Join(dir, fmt.Sprintf("streams-%d-%d", gi, w))
			if err := os.WriteFile(f, []byte(strings.Join(chunk, "\n")+"\n"), 0o600); err != nil {
				return total, nil, err
			}
			kid, err := startIdleWorker(ctx, self, addr, f, hold)
			if err != nil {
				return total, nil, err
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
			return total, nil, err
		}
	}
	total.OpenSeconds = time.Since(began).Seconds()
	atPeak()
	mon := watch(time.Second, srvs...)
	for _, k := range kids {
		rest, err := next(k, "DONE")
		if err != nil {
			mon.stop()
			return total, nil, err
		}
		var r idleResult
		if err := json.Unmarshal([]byte(rest), &r); err != nil {
			mon.stop()
			return total, nil, err
		}
		total.Opened += r.Opened
		total.Failed += r.Failed
		total.EndedEarly += r.EndedEarly
		total.Bytes += r.Bytes
		total.FirstError = cmp.Or(total.FirstError, r.FirstError)
	}
	return total, mon.stop(), nil
}

// chunks splits s into about-equal runs of at most size.
func chunks(s []string, size int) [][]string {
	n := (len(s) + size - 1) / size
	out := make([][]string, 0, n)
	for i := range n {
		out = append(out, s[i*len(s)/n:(i+1)*len(s)/n])
	}
	return out
}
