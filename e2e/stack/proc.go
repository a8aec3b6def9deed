// Package stack runs the real exportstream binaries for the system tests,
// the benchmarks and the fault campaign: it builds them once (or takes
// EXPORTSTREAM_BIN_DIR), starts the backend, the BFF or any other server
// with its flags, waits until it listens, signals it, restarts it on the
// same address, and reads what it holds: a Prometheus series, its file
// descriptors, connections and memory, an export's events and file.
//
// The error-returning functions (Build, Start, SampleProc, FDs, Conns)
// serve the benchmarks and the campaign; the ones taking a testing.TB fail
// or skip the test instead and stop what they started when it ends.
package stack

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Cmd is how to run one server. In Args and Env, "{addr}" stands for the
// server's listen address (host:port) and "{port}" for its port: a fresh
// one at a start, the same one at a restart.
type Cmd struct {
	Name string // in messages
	Path string // the program
	Args []string
	Env  []string // added to this process's environment

	// How to tell the server is ready, the first that is set: Probe
	// returns true for its address; Health is a path that answers 200.
	// With neither, the server is ready when it logs a JSON line whose msg
	// ends in "listening" and whose addr is its address (the exportstream
	// binaries do), and "{addr}" is 127.0.0.1:0 at a first start: the
	// kernel picks the port, with no race for a free one.
	Probe  func(addr string) bool
	Health string

	// Stdout and Stderr take the server's output (stdout from after the
	// listening line); nil discards it.
	Stdout, Stderr io.Writer

	// Group runs the server in a process group of its own, which every
	// signal reaches: a terminal's Ctrl-C then goes to the harness only,
	// and SIGSTOP stops whatever the server forked too.
	Group bool
}

// readyWithin bounds a start.
const readyWithin = 20 * time.Second

// Proc is one running server.
type Proc struct {
	Cmd  Cmd
	Addr string // host:port
	URL  string // http://Addr

	cmd    *exec.Cmd
	exited chan struct{}
	err    error // the exit, once exited is closed
}

// Start runs c and returns once it is ready (within 20 s, or ctx).
func Start(ctx context.Context, c Cmd) (*Proc, error) { return start(ctx, c, "") }

// Restart runs p's command again on p's address (p must have exited).
func (p *Proc) Restart(ctx context.Context) (*Proc, error) { return start(ctx, p.Cmd, p.Addr) }

func start(ctx context.Context, c Cmd, addr string) (*Proc, error) {
	logLine := c.Probe == nil && c.Health == ""
	switch {
	case addr != "":
	case logLine:
		addr = "127.0.0.1:0"
	default:
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		addr = "127.0.0.1:" + strconv.Itoa(port)
	}
	_, port, _ := net.SplitHostPort(addr)
	expand := func(in []string) []string {
		out := make([]string, len(in))
		for i, s := range in {
			out[i] = strings.ReplaceAll(strings.ReplaceAll(s, "{addr}", addr), "{port}", port)
		}
		return out
	}
	cmd := exec.Command(c.Path, expand(c.Args)...)
	cmd.Env = append(os.Environ(), expand(c.Env)...)
	cmd.Stderr = c.Stderr
	// The server dies with whoever started it: a test binary killed on
	// its timeout leaves nothing behind.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: c.Group}
	var stdout io.ReadCloser
	if logLine {
		var err error
		if stdout, err = cmd.StdoutPipe(); err != nil {
			return nil, fmt.Errorf("start %s: %w", c.Name, err)
		}
	} else {
		cmd.Stdout = c.Stdout
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", c.Name, err)
	}
	p := &Proc{Cmd: c, Addr: addr, cmd: cmd, exited: make(chan struct{})}
	// Reaping closes stdout once the server exits; a server exits only
	// after its listening line, if it ever writes one.
	go p.wait()
	ctx, cancel := context.WithTimeout(ctx, readyWithin)
	defer cancel()
	var err error
	if logLine {
		p.Addr, err = listening(ctx, c, stdout)
	} else {
		err = p.poll(ctx)
	}
	if err != nil {
		p.Kill()
		return nil, err
	}
	p.URL = "http://" + p.Addr
	return p, nil
}

// wait reaps the process, once for every Wait.
func (p *Proc) wait() {
	p.err = p.cmd.Wait()
	close(p.exited)
}

// listening reads stdout until the server logs that it listens and returns
// its address; the rest of stdout goes to c.Stdout.
func listening(ctx context.Context, c Cmd, stdout io.Reader) (string, error) {
	found := make(chan string, 1)
	go func() {
		defer close(found)
		lines := bufio.NewScanner(stdout)
		for lines.Scan() {
			var l struct{ Msg, Addr string }
			if json.Unmarshal(lines.Bytes(), &l) == nil && strings.HasSuffix(l.Msg, "listening") {
				found <- l.Addr
				w := c.Stdout
				if w == nil {
					w = io.Discard
				}
				_, _ = io.Copy(w, stdout)
				return
			}
		}
	}()
	select {
	case addr, ok := <-found:
		if !ok {
			return "", fmt.Errorf("%s exited before listening", c.Name)
		}
		return addr, nil
	case <-ctx.Done():
		return "", fmt.Errorf("%s did not log that it listens: %w", c.Name, ctx.Err())
	}
}

// Ready waits until p, started with a Probe or a Health path, answers it
// again (after SIGCONT, say), or ctx ends or p exits.
func (p *Proc) Ready(ctx context.Context) error { return p.poll(ctx) }

// poll waits until p answers c.Probe or c.Health.
func (p *Proc) poll(ctx context.Context) error {
	probe := p.Cmd.Probe
	if probe == nil {
		// No keep-alive: an idle connection of the harness would count as
		// one of the server's.
		hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
		probe = func(addr string) bool {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+p.Cmd.Health, nil)
			if err != nil {
				return false
			}
			resp, err := hc.Do(req)
			if err != nil {
				return false
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			return resp.StatusCode == http.StatusOK
		}
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !probe(p.Addr) {
		select {
		case <-p.exited:
			return fmt.Errorf("%s exited before it was ready: %w", p.Cmd.Name, p.err)
		case <-ctx.Done():
			return fmt.Errorf("%s not ready on %s: %w", p.Cmd.Name, p.Addr, ctx.Err())
		case <-tick.C:
		}
	}
	return nil
}

// Pid is the server's process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Signal sends sig to the server (to its process group with Cmd.Group).
func (p *Proc) Signal(sig os.Signal) error {
	if s, ok := sig.(syscall.Signal); ok && p.Cmd.Group {
		if err := syscall.Kill(-p.Pid(), s); err != nil {
			return fmt.Errorf("signal %s to %s: %w", sig, p.Cmd.Name, err)
		}
		return nil
	}
	return p.cmd.Process.Signal(sig)
}

// Wait waits for the server to exit and returns how it did (nil for 0).
func (p *Proc) Wait() error {
	<-p.exited
	return p.err
}

// Kill kills the server with SIGKILL (no clean end of anything) and waits
// for it.
func (p *Proc) Kill() {
	_ = p.Signal(syscall.SIGKILL)
	_ = p.Wait()
}

// Terminate sends SIGTERM and returns the exit (nil for 0).
func (p *Proc) Terminate() error {
	_ = p.Signal(syscall.SIGTERM)
	return p.Wait()
}

// Stop sends SIGTERM, then SIGKILL after 5 s.
func (p *Proc) Stop() {
	if p == nil {
		return
	}
	_ = p.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(5 * time.Second):
		p.Kill()
	}
}

// freePort asks the kernel for an unused loopback port.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port, nil
}
