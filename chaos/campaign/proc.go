package campaign

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/exportstream/exportstream/e2e/stack"
)

// proc is one process of the system under test: a backend, a BFF or
// redis-server, started by the system tests' harness and restarted in
// place (the same address) after a kill. It runs in a process group of its
// own (signalled as a group) and dies with the campaign. On top of the
// harness it keeps what the checker asks about a process: whether it was
// ever killed, its exits nobody asked for, the panics in its log.
type proc struct {
	name    string
	cmd     stack.Cmd // Stdout and Stderr are log, opened by newProc
	log     *os.File  // every start appends to it; closed by Stack.Close
	logPath string

	mu      sync.Mutex
	cur     *stack.Proc // running now; nil once it exited
	last    *stack.Proc // the latest started, which a restart repeats
	killed  bool        // kill -9'ed at least once: not a survivor
	stopped bool        // SIGSTOPped now
	ending  bool        // the campaign is ending the running process
	crashes []string    // exits nobody asked for, of a process that had been ready
}

// addr is the process's host:port (the same over restarts), once it
// started.
func (p *proc) addr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.last == nil {
		return ""
	}
	return p.last.Addr
}

func (p *proc) url() string { return "http://" + p.addr() }

func (p *proc) pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cur == nil {
		return 0
	}
	return p.cur.Pid()
}

// start runs the process and waits until it is ready, starting it again
// if it exits before (a backend restarted while Redis is down exits: it
// does not start without Redis), for at most 30 s. A process that is
// running already is waited for until it is ready.
func (p *proc) start(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for attempt := 1; ; attempt++ {
		err := p.startOnce(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			p.kill()
			return fmt.Errorf("%s not ready within 30s (%d starts; log %s): %w", p.name, attempt, p.logPath, err)
		}
		if !waitUntil(ctx, time.Now().Add(300*time.Millisecond)) {
			return fmt.Errorf("%s: %w", p.name, ctx.Err())
		}
	}
}

// restart starts the process again after a kill.
func (p *proc) restart(ctx context.Context) error { return p.start(ctx) }

func (p *proc) startOnce(ctx context.Context) error {
	p.mu.Lock()
	cur, last := p.cur, p.last
	p.mu.Unlock()
	if cur != nil {
		return cur.Ready(ctx)
	}
	_, _ = fmt.Fprintf(p.log, "\n### campaign: starting %s at %s\n", p.name, time.Now().Format(time.RFC3339Nano))
	var err error
	if last == nil {
		cur, err = stack.Start(ctx, p.cmd)
	} else {
		cur, err = last.Restart(ctx)
	}
	if err != nil {
		return err
	}
	p.mu.Lock()
	p.cur, p.last, p.stopped, p.ending = cur, cur, false, false
	p.mu.Unlock()
	go func() { p.exited(cur, cur.Wait()) }()
	return nil
}

// exited records that sp is gone: a crash unless the campaign ended it.
func (p *proc) exited(sp *stack.Proc, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cur != sp {
		return // recorded already
	}
	if !p.ending {
		p.crashes = append(p.crashes, fmt.Sprintf("exited by itself at %s: %v (log %s)", time.Now().Format(time.TimeOnly), err, p.logPath))
	}
	p.cur = nil
}

// end marks the running process as ended by the campaign (killed too with
// kill) and returns it, nil when none runs.
func (p *proc) end(kill bool) *stack.Proc {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cur != nil {
		p.ending = true
		p.killed = p.killed || kill
	}
	return p.cur
}

// signal sends sig to the process group.
func (p *proc) signal(sig syscall.Signal) error {
	p.mu.Lock()
	cur := p.cur
	p.mu.Unlock()
	if cur == nil {
		return fmt.Errorf("%s is not running", p.name)
	}
	return cur.Signal(sig)
}

// kill sends SIGKILL and waits until the process is gone.
func (p *proc) kill() {
	if cur := p.end(true); cur != nil {
		cur.Kill()
		p.exited(cur, nil)
	}
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
	if cur := p.end(false); cur != nil {
		_ = cur.Signal(syscall.SIGCONT)
		cur.Stop()
		p.exited(cur, nil)
	}
}

// running reports a live process that is not stopped.
func (p *proc) running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cur != nil && !p.stopped
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
