package main

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
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// server is one process under test: the real backend or BFF binary, or the
// Node baseline.
type server struct {
	name string
	url  string // http://127.0.0.1:port
	cmd  *exec.Cmd
	log  *os.File
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

// start runs argv with addr substituted for {addr} and waits until health
// answers 200 (at most 20 s). Its output goes to logDir/name.log.
func start(ctx context.Context, name, logDir, health string, env []string, argv ...string) (*server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	for i, a := range argv {
		argv[i] = strings.ReplaceAll(a, "{addr}", addr)
		argv[i] = strings.ReplaceAll(argv[i], "{port}", strconv.Itoa(port))
	}
	for i, e := range env {
		env[i] = strings.ReplaceAll(e, "{port}", strconv.Itoa(port))
	}
	logf, err := os.Create(filepath.Join(logDir, name+".log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	s := &server{name: name, url: "http://" + addr, cmd: cmd, log: logf}
	deadline := time.Now().Add(20 * time.Second)
	// No keep-alive: an idle connection of the harness would count as one
	// of the server's (the users scenario counts the backend's).
	hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	for time.Now().Before(deadline) {
		if ctx.Err() != nil {
			s.stop()
			return nil, ctx.Err()
		}
		resp, err := hc.Get(s.url + health)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s, nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.stop()
	return nil, fmt.Errorf("%s did not become healthy at %s within 20s (see %s)", name, s.url, logf.Name())
}

func (s *server) pid() int { return s.cmd.Process.Pid }

// stop sends SIGTERM, then SIGKILL after 5 s.
func (s *server) stop() {
	if s == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = s.cmd.Process.Kill()
		<-done
	}
	_ = s.log.Close()
}

// procSample is one reading of /proc/<pid>.
type procSample struct {
	at      time.Time
	rssKiB  int64
	cpuTick int64 // utime + stime, in clock ticks
	fds     int
	// waited is how long its threads have been runnable but waiting for
	// a core (schedstat's run delay, summed over the threads alive now).
	waited time.Duration
}

// clockTicks is USER_HZ; 100 on every Linux this runs on.
const clockTicks = 100

func sampleProc(pid int) (procSample, error) {
	s := procSample{at: time.Now()}
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, err
	}
	// Fields after the parenthesised command name; utime and stime are
	// fields 14 and 15 of the whole line.
	rest := string(st[strings.LastIndexByte(string(st), ')')+2:])
	f := strings.Fields(rest)
	if len(f) < 13 {
		return s, errors.New("short /proc stat")
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	stt, _ := strconv.ParseInt(f[12], 10, 64)
	s.cpuTick = ut + stt
	fh, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	defer func() { _ = fh.Close() }()
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			s.rssKiB, _ = strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
		}
	}
	if ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid)); err == nil {
		s.fds = len(ents)
	}
	s.waited = runDelay(pid)
	return s, nil
}

// runDelay sums the run delay of pid's threads: the time each spent
// runnable, waiting for a core (/proc/<pid>/task/<tid>/schedstat, 2nd field, ns).
func runDelay(pid int) time.Duration {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	var sum int64
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		if f := strings.Fields(string(b)); len(f) >= 2 {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			sum += n
		}
	}
	return time.Duration(sum)
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
	first  map[string]procSample
	last   map[string]procSample
	peak   map[string]int64
	stopCh chan struct{}
	done   chan struct{}
}

func watch(interval time.Duration, servers ...*server) *monitor {
	m := &monitor{first: map[string]procSample{}, last: map[string]procSample{}, peak: map[string]int64{},
		stopCh: make(chan struct{}), done: make(chan struct{})}
	take := func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		for _, s := range servers {
			if s == nil {
				continue
			}
			ps, err := sampleProc(s.pid())
			if err != nil {
				continue
			}
			if _, ok := m.first[s.name]; !ok {
				m.first[s.name] = ps
			}
			m.last[s.name] = ps
			m.peak[s.name] = max(m.peak[s.name], ps.rssKiB)
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
		cpu := float64(l.cpuTick-f.cpuTick) / clockTicks
		wall := l.at.Sub(f.at).Seconds()
		u := usage{CPUSeconds: cpu, RSSStartKiB: f.rssKiB, RSSPeakKiB: m.peak[name], RSSEndKiB: l.rssKiB, FDsEnd: l.fds}
		if wall > 0 {
			u.CPUPercent = 100 * cpu / wall
			u.WaitedMsPerS = float64((l.waited - f.waited).Milliseconds()) / wall
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
