package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/exportstream/exportstream/e2e/stack"
)

// server is one process under test: the real backend or BFF binary, the
// Node baseline, the floor server or Redis, its output in a log file.
type server struct {
	*stack.Proc
	name string
	url  string // http://127.0.0.1:port (redis:// for Redis)
	log  *os.File
}

// start runs argv (with {addr} and {port} for a free loopback port's) and
// waits until its /healthz answers 200 (at most 20 s). Its output goes to
// logDir/name.log.
func start(ctx context.Context, name, logDir string, env []string, argv ...string) (*server, error) {
	return startProbed(ctx, name, logDir, stack.Cmd{Health: "/healthz", Env: env, Path: argv[0], Args: argv[1:]})
}

// startProbed runs c until it is ready: its Probe returns true or,
// without one, its Health path answers 200 (at most 20 s). Its output goes to logDir/name.log.
func startProbed(ctx context.Context, name, logDir string, c stack.Cmd) (*server, error) {
	logf, err := os.Create(filepath.Join(logDir, name+".log"))
	if err != nil {
		return nil, err
	}
	c.Name, c.Stdout, c.Stderr = name, logf, logf
	p, err := stack.Start(ctx, c)
	if err != nil {
		_ = logf.Close()
		return nil, fmt.Errorf("%w (see %s)", err, logf.Name())
	}
	return &server{Proc: p, name: name, url: p.URL, log: logf}, nil
}

func (s *server) pid() int { return s.Pid() }

// stop sends SIGTERM, then SIGKILL after 5 s.
func (s *server) stop() {
	if s == nil {
		return
	}
	s.Stop()
	_ = s.log.Close()
}

// cpuPressure is the kernel's "some" CPU pressure so far: the time during
// which at least one runnable thread waited for a core (/proc/pressure/cpu).
// ok is false without PSI.
func cpuPressure() (time.Duration, bool) {
	b, err := os.ReadFile("/proc/pressure/cpu")
	if err != nil {
		return 0, false
	}
	for _, f := range strings.Fields(string(b)) {
		if v, found := strings.CutPrefix(f, "total="); found {
			us, err := strconv.ParseInt(v, 10, 64)
			return time.Duration(us) * time.Microsecond, err == nil
		}
	}
	return 0, false
}

// monitor samples processes every interval until stopped, keeping the
// first and last sample and the peak RSS of each.
type monitor struct {
	mu     sync.Mutex
	first  map[string]stack.Sample
	last   map[string]stack.Sample
	peak   map[string]int64
	stopCh chan struct{}
	done   chan struct{}
}

func watch(interval time.Duration, servers ...*server) *monitor {
	m := &monitor{first: map[string]stack.Sample{}, last: map[string]stack.Sample{}, peak: map[string]int64{},
		stopCh: make(chan struct{}), done: make(chan struct{})}
	take := func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		for _, s := range servers {
			if s == nil {
				continue
			}
			ps, err := stack.SampleProc(s.pid())
			if err != nil {
				continue
			}
			if _, ok := m.first[s.name]; !ok {
				m.first[s.name] = ps
			}
			m.last[s.name] = ps
			m.peak[s.name] = max(m.peak[s.name], ps.RSSKiB)
		}
	}
	take()
	go func() {
		defer close(m.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-m.stopCh:
				take()
				return
			case <-t.C:
				take()
			}
		}
	}()
	return m
}

// usage is what one process used between the monitor's start and stop.
type usage struct {
	CPUSeconds  float64 `json:"cpuSeconds"`
	CPUPercent  float64 `json:"cpuPercent"` // of one core
	RSSStartKiB int64   `json:"rssStartKiB"`
	RSSPeakKiB  int64   `json:"rssPeakKiB"`
	RSSEndKiB   int64   `json:"rssEndKiB"`
	FDsEnd      int     `json:"fdsEnd"`
	// WaitedMsPerS: how long its threads waited for a core, per second.
	WaitedMsPerS float64 `json:"waitedMsPerS"`
}

func (m *monitor) stop() map[string]usage {
	close(m.stopCh)
	<-m.done
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]usage{}
	for name, f := range m.first {
		l := m.last[name]
		cpu := float64(l.CPUTick-f.CPUTick) / stack.ClockTicks
		wall := l.At.Sub(f.At).Seconds()
		u := usage{CPUSeconds: cpu, RSSStartKiB: f.RSSKiB, RSSPeakKiB: m.peak[name], RSSEndKiB: l.RSSKiB, FDsEnd: l.FDs}
		if wall > 0 {
			u.CPUPercent = 100 * cpu / wall
			u.WaitedMsPerS = float64((l.Waited - f.Waited).Milliseconds()) / wall
		}
		out[name] = u
	}
	return out
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
