package campaign

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is one process of the system under test: a backend, a BFF or
// redis-server, on a fixed loopback port so it can be restarted in place.
// It runs in a process group of its own (stopped as a group) and dies with
// the campaign (Pdeathsig).
type proc struct {
	name    string
	argv    []string
	env     []string
	port    int
	logPath string
	ready   func(ctx context.Context) error

	mu       sync.Mutex
	cmd      *exec.Cmd
	exited   chan struct{} // closed when cmd exits
	killed   bool          // kill -9'ed at least once: not a survivor
	stopped  bool          // SIGSTOPped now
	wasReady bool          // the running process was ready once
	ending   bool          // the campaign is ending the running process
	crashes  []string      // exits nobody asked for, of a process that had been ready
}

func (p *proc) addr() string { return "127.0.0.1:" + strconv.Itoa(p.port) }
func (p *proc) url() string  { return "http://" + p.addr() }

func (p *proc) pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// start runs the process and waits until it is ready, starting it again
// if it exits before (a backend restarted while Redis is down exits: it
// does not start without Redis), for at most 30 s.
func (p *proc) start(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var lastErr error
	for attempt := 0; ; attempt++ {
		exited, err := p.spawn()
		if err != nil {
			return err
		}
		lastErr = p.waitReady(ctx, exited)
		if lastErr == nil {
			p.mu.Lock()
			p.wasReady = true
			p.mu.Unlock()
			return nil
		}
		if ctx.Err() != nil {
			p.kill()
			return fmt.Errorf("%s not ready within 30s (%d starts; log %s): %w", p.name, attempt+1, p.logPath, lastErr)
		}
		if !waitUntil(ctx, time.Now().Add(300*time.Millisecond)) {
			return fmt.Errorf("%s: %w", p.name, ctx.Err())
		}
	}
}

// restart starts the process again after a kill.
func (p *proc) restart(ctx context.Context) error { return p.start(ctx) }

func (p *proc) spawn() (chan struct{}, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		return p.exited, nil // running
	}
	logf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("log of %s: %w", p.name, err)
	}
	_, _ = fmt.Fprintf(logf, "\n### campaign: starting %s at %s\n", p.name, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(p.argv[0], p.argv[1:]...)
	cmd.Env = append(os.Environ(), p.env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		return nil, fmt.Errorf("start %s: %w", p.name, err)
	}
	exited := make(chan struct{})
	p.cmd, p.exited, p.stopped, p.wasReady, p.ending = cmd, exited, false, false, false
	go func() {
		err := cmd.Wait()
		_ = logf.Close()
		p.mu.Lock()
		if p.cmd == cmd {
			if p.wasReady && !p.ending {
				p.crashes = append(p.crashes, fmt.Sprintf("exited by itself at %s: %v (log %s)", time.Now().Format(time.TimeOnly), err, p.logPath))
			}
			p.cmd = nil
		}
		p.mu.Unlock()
		close(exited)
	}()
	return exited, nil
}

// waitReady polls the readiness check every 50 ms until it passes, the
// process exits or ctx ends.
func (p *proc) waitReady(ctx context.Context, exited chan struct{}) error {
	var last error
	for {
		select {
		case <-exited:
			return fmt.Errorf("exited before it was ready (last check: %w)", last)
		default:
		}
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		last = p.ready(cctx)
		cancel()
		if last == nil {
			return nil
		}
		if !waitUntil(ctx, time.Now().Add(50*time.Millisecond)) {
			return last
		}
	}
}

// signal sends sig to the process group.
func (p *proc) signal(sig syscall.Signal) error {
	pid := p.pid()
	if pid == 0 {
		return fmt.Errorf("%s is not running", p.name)
	}
	if err := syscall.Kill(-pid, sig); err != nil {
		return fmt.Errorf("signal %s to %s: %w", sig, p.name, err)
	}
	return nil
}

// kill sends SIGKILL and waits until the process is gone.
func (p *proc) kill() {
	p.mu.Lock()
	exited := p.exited
	running := p.cmd != nil
	if running {
		p.killed, p.ending = true, true
	}
	p.mu.Unlock()
	if !running {
		return
	}
	_ = p.signal(syscall.SIGKILL)
	<-exited
}

func (p *proc) pause() error {
	if err := p.signal(syscall.SIGSTOP); err != nil {
		return err
	}
	p.mu.Lock()
	p.stopped = true
	p.mu.Unlock()
	return nil
}

func (p *proc) resume() error {
	p.mu.Lock()
	p.stopped = false
	p.mu.Unlock()
	return p.signal(syscall.SIGCONT)
}

// stop ends the process: SIGCONT (a paused one could not act on SIGTERM),
// SIGTERM, SIGKILL after 5 s.
func (p *proc) stop() {
	p.mu.Lock()
	exited, running := p.exited, p.cmd != nil
	p.ending = true
	p.mu.Unlock()
	if !running {
		return
	}
	_ = p.signal(syscall.SIGCONT)
	_ = p.signal(syscall.SIGTERM)
	t := time.NewTimer(5 * time.Second)
	defer t.Stop()
	select {
	case <-exited:
	case <-t.C:
		_ = p.signal(syscall.SIGKILL)
		<-exited
	}
}

// running reports a live process that is not stopped.
func (p *proc) running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd != nil && !p.stopped
}

func (p *proc) everKilled() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.killed
}

// crashed lists the process's exits nobody asked for.
func (p *proc) crashed() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.crashes)
}

// panics returns the lines of the process's log that tell of a panic
// (recovered by a middleware or not) or a fatal runtime error.
func (p *proc) panics() []string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return nil
	}
	var out []string
	for line := range strings.Lines(string(b)) {
		if strings.Contains(line, "panic:") || strings.Contains(line, "panic serving request") || strings.Contains(line, "fatal error:") {
			out = append(out, strings.TrimSpace(line))
			if len(out) == 5 {
				break
			}
		}
	}
	return out
}

// httpReady is a readiness check: GET url+path answers 200.
func httpReady(url string) func(context.Context) error {
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil}}
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %s", url, resp.Status)
		}
		return nil
	}
}

// redisReady is redis-server's readiness check: PING answers PONG.
func redisReady(addr string) func(context.Context) error {
	return func(ctx context.Context) error {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		defer func() { _ = c.Close() }()
		if dl, ok := ctx.Deadline(); ok {
			_ = c.SetDeadline(dl)
		}
		if _, err := c.Write([]byte("PING\r\n")); err != nil {
			return err
		}
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			return err
		}
		if !strings.HasPrefix(line, "+PONG") {
			return errors.New("redis: " + strings.TrimSpace(line))
		}
		return nil
	}
}

// freePort asks the kernel for an unused loopback port.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port, nil
}
