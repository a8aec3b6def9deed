package campaign

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/exportstream/exportstream/e2e/stack"
	"github.com/exportstream/exportstream/internal/redistest"
)

// Binaries are the paths of the real backend and BFF.
type Binaries struct{ Backend, BFF string }

// BuildBinaries builds the backend and the BFF into dir with the system
// tests' harness (CGO_ENABLED=0, as shipped), or takes them from binDir when it is set
// (EXPORTSTREAM_BIN_DIR).
func BuildBinaries(ctx context.Context, binDir, dir string) (Binaries, error) {
	if binDir != "" {
		b := Binaries{filepath.Join(binDir, "backend"), filepath.Join(binDir, "bff")}
		for _, p := range []string{b.Backend, b.BFF} {
			if _, err := os.Stat(p); err != nil {
				return b, fmt.Errorf("EXPORTSTREAM_BIN_DIR: %w", err)
			}
		}
		return b, nil
	}
	if err := stack.Build(ctx, dir, "CGO_ENABLED=0"); err != nil {
		return Binaries{}, fmt.Errorf("go build: %w", err)
	}
	return Binaries{filepath.Join(dir, "backend"), filepath.Join(dir, "bff")}, nil
}

// RepoRoot finds the directory holding go.work, from dir upwards.
func RepoRoot(dir string) (string, error) {
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.work")); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no go.work above %s: run from the exportstream repository", dir)
		}
	}
}

// StackConfig is what a stack needs.
type StackConfig struct {
	Topology Topology
	Bin      Binaries
	Dir      string // the run's directory: data, logs
	Log      *slog.Logger
	// RequireDisk fails the start when the tmpfs cannot be mounted
	// (CI=true); otherwise disk-full faults are skipped with a log line.
	RequireDisk bool
}

// Tunables the campaign runs the services with: short intervals so that
// recovery fits in a run, the documented defaults otherwise.
const (
	sessionSecret   = "chaos-campaign-session-secret-32-bytes!!"
	backendRetry    = "500ms"
	bffRetry        = "300ms"
	heartbeat       = "2s"
	upstreamIdle    = "6s" // 3 heartbeats: a blackholed upstream is noticed
	upstreamGiveUp  = "15s"
	upstreamLinger  = "1s"
	multiplexResync = "2s"
	claimIdle       = "6s"
	workers         = "8"
	diskSize        = 64 << 20
)

// Stack is a running topology: the processes, the links between them
// (fault proxies) and the data directory's disk.
type Stack struct {
	cfg        StackConfig
	redis      *proc
	backends   []*proc
	bffs       []*proc
	bffLinks   []*link // BFF i → backends
	redisLinks []*link // backend i → Redis
	disk       *disk
	procs      []*proc // every one prepared, whose logs Close closes
}

// StartStack starts the topology and waits until every BFF is ready. On
// failure it stops whatever it had started.
func StartStack(ctx context.Context, cfg StackConfig) (*Stack, error) {
	s := &Stack{cfg: cfg}
	if err := s.start(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func (s *Stack) start(ctx context.Context) error {
	cfg := s.cfg
	if err := os.MkdirAll(s.logDir(), 0o700); err != nil {
		return fmt.Errorf("logs dir: %w", err)
	}
	d, err := mountDisk(filepath.Join(cfg.Dir, "data"), cfg.Log)
	if err != nil {
		return err
	}
	s.disk = d
	if !s.disk.mounted && cfg.RequireDisk {
		return errors.New("CI=true: the disk-full fault needs a tmpfs, and mounting one failed (needs root or CAP_SYS_ADMIN)")
	}
	nb, nf := processTargets(cfg.Topology)
	if cfg.Topology == TopologyA {
		if err := s.startRedis(ctx); err != nil {
			return err
		}
	}
	if err := s.startBackends(ctx, nb); err != nil {
		return err
	}
	return s.startBFFs(ctx, nf)
}

func (s *Stack) logDir() string { return filepath.Join(s.cfg.Dir, "logs") }

// newProc prepares a process that logs to its own file. In args and env,
// "{addr}" and "{port}" stand for its address, a free loopback port at its
// first start. It is ready when GET health answers 200 or, without health,
// when probe returns true.
func (s *Stack) newProc(name, health string, probe func(addr string) bool, path string, args, env []string) (*proc, error) {
	logPath := filepath.Join(s.logDir(), name+".log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("log of %s: %w", name, err)
	}
	p := &proc{name: name, log: logf, logPath: logPath, cmd: stack.Cmd{
		Name: name, Path: path, Args: args, Env: env, Health: health, Probe: probe, Stdout: logf, Stderr: logf, Group: true,
	}}
	s.procs = append(s.procs, p)
	return p, nil
}

func (s *Stack) startRedis(ctx context.Context) error {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return fmt.Errorf("topology A needs redis-server: %w", err)
	}
	redisDir := filepath.Join(s.cfg.Dir, "redis")
	if err := os.MkdirAll(redisDir, 0o700); err != nil {
		return fmt.Errorf("redis dir: %w", err)
	}
	// AOF fsynced at every write, no RDB: what docker-compose.scale.yml
	// runs and the README's "durable before visible" assumes.
	s.redis, err = s.newProc("redis", "", redistest.Ping, bin, []string{"--port", "{port}", "--bind", "127.0.0.1", "--save", "",
		"--appendonly", "yes", "--appendfsync", "always", "--dir", redisDir, "--daemonize", "no", "--loglevel", "warning"}, nil)
	if err != nil {
		return err
	}
	return s.redis.start(ctx)
}

// startBackends starts n backends (on Redis through their own links in
// topology A) and waits until each is ready.
func (s *Stack) startBackends(ctx context.Context, n int) error {
	for i := 1; i <= n; i++ {
		env := []string{"DATA_DIR=" + s.disk.dir, "WORKERS=" + workers, "SSE_RETRY=" + backendRetry,
			"HEARTBEAT_INTERVAL=" + heartbeat, "LOG_LEVEL=warn", "SHUTDOWN_TIMEOUT=3s", "SCENARIOS=on"} // the workload uses failAt
		if s.cfg.Topology == TopologyA {
			l, err := newLink(fmt.Sprintf("redislink-%d", i), s.redis.addr())
			if err != nil {
				return err
			}
			s.redisLinks = append(s.redisLinks, l)
			env = append(env, "REDIS_URL=redis://"+l.Addr()+"/0", "REDIS_CLAIM_IDLE="+claimIdle)
		}
		p, err := s.newProc(fmt.Sprintf("backend-%d", i), "/readyz", nil, s.cfg.Bin.Backend, []string{"-addr", "{addr}"}, env)
		if err != nil {
			return err
		}
		s.backends = append(s.backends, p)
	}
	for _, p := range s.backends {
		if err := p.start(ctx); err != nil {
			return err
		}
	}
	return nil
}

// startBFFs starts n BFFs, each through its own link to the backends, and
// waits until each is ready.
func (s *Stack) startBFFs(ctx context.Context, n int) error {
	nb := len(s.backends)
	for i := 1; i <= n; i++ {
		// BFF i reaches the backends starting with backend i, in turn.
		var targets []string
		for j := range nb {
			targets = append(targets, s.backends[(i-1+j)%nb].addr())
		}
		l, err := newLink(fmt.Sprintf("bfflink-%d", i), targets...)
		if err != nil {
			return err
		}
		s.bffLinks = append(s.bffLinks, l)
		p, err := s.newProc(fmt.Sprintf("bff-%d", i), "/readyz", nil, s.cfg.Bin.BFF, []string{"-addr", "{addr}"}, []string{
			"BACKEND_URL=http://" + l.Addr(), "SESSION_SECRET=" + sessionSecret, "SSE_RETRY=" + bffRetry,
			"HEARTBEAT_INTERVAL=" + heartbeat, "UPSTREAM_IDLE_TIMEOUT=" + upstreamIdle, "UPSTREAM_GIVEUP=" + upstreamGiveUp,
			"UPSTREAM_LINGER=" + upstreamLinger, "MULTIPLEX_RESYNC=" + multiplexResync, "CREATE_RATE=10",
			"LOG_LEVEL=warn", "SHUTDOWN_TIMEOUT=3s", "STATIC_DIR=" + s.cfg.Dir,
		})
		if err != nil {
			return err
		}
		s.bffs = append(s.bffs, p)
		if err := p.start(ctx); err != nil {
			return err
		}
	}
	return nil
}

// BFFURLs are the BFFs' base URLs, which browsers use in turn.
func (s *Stack) BFFURLs() []string {
	var out []string
	for _, p := range s.bffs {
		out = append(out, p.url())
	}
	return out
}

// goProcs are the Go processes (backends, BFFs), whose leaks are checked.
func (s *Stack) goProcs() []*proc { return append(append([]*proc(nil), s.backends...), s.bffs...) }

func (s *Stack) proc(name string) *proc {
	for _, p := range s.goProcs() {
		if p.name == name {
			return p
		}
	}
	panic("campaign: no process " + name)
}

func (s *Stack) link(name string) *link {
	for _, l := range s.links() {
		if l.name == name {
			return l
		}
	}
	panic("campaign: no link " + name)
}

// Heal undoes whatever a fault left behind (the injector undoes each; this
// is the safety net) and waits until every process is running and ready.
// It returns each process's error.
func (s *Stack) Heal(ctx context.Context) map[string]error {
	for _, l := range s.links() {
		l.SetLatency(0)
		l.Refuse(false)
		l.Blackhole(false)
	}
	if s.disk != nil {
		_ = s.disk.free(ctx)
	}
	errs := map[string]error{}
	all := s.goProcs()
	if s.redis != nil {
		all = append([]*proc{s.redis}, all...)
	}
	for _, p := range all {
		if !p.running() && p.pid() != 0 {
			_ = p.resume()
		}
		if err := p.start(ctx); err != nil {
			errs[p.name] = err
		}
	}
	return errs
}

// Close stops every process, link and the disk.
func (s *Stack) Close() {
	for _, p := range s.bffs {
		p.stop()
	}
	for _, p := range s.backends {
		p.stop()
	}
	if s.redis != nil {
		s.redis.stop()
	}
	for _, p := range s.procs {
		_ = p.log.Close()
	}
	for _, l := range s.links() {
		l.Close()
	}
	if s.disk != nil {
		s.disk.unmount()
	}
}

// disk is the data directory: a tmpfs of diskSize when it can be mounted
// (root), which the disk-full fault fills with a ballast file.
type disk struct {
	dir     string
	mounted bool
	log     *slog.Logger
}

func mountDisk(dir string, log *slog.Logger) (*disk, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	d := &disk{dir: dir, log: log}
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d,mode=0700", diskSize), "tmpfs", dir).CombinedOutput()
	if err != nil {
		log.Warn("SKIPPING disk-full faults: cannot mount a tmpfs for the data directory (needs root or CAP_SYS_ADMIN)", "err", err, "out", strings.TrimSpace(string(out)))
		return d, nil
	}
	d.mounted = true
	return d, nil
}

func (d *disk) ballast() string { return filepath.Join(d.dir, "chaos-ballast") }

// fill writes the ballast until the disk says ENOSPC (bounded by its size).
func (d *disk) fill(ctx context.Context) error {
	f, err := os.OpenFile(d.ballast(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("ballast: %w", err)
	}
	defer func() { _ = f.Close() }()
	chunk := make([]byte, 64<<10)
	for range diskSize/len(chunk) + 1 {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if _, err = f.Write(chunk); err != nil {
			break
		}
	}
	if !errors.Is(err, syscall.ENOSPC) {
		return fmt.Errorf("filling %s: %w, want ENOSPC", d.dir, err)
	}
	return nil
}

func (d *disk) free(context.Context) error {
	if err := os.Remove(d.ballast()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("free the disk: %w", err)
	}
	return nil
}

func (d *disk) unmount() {
	if !d.mounted {
		return
	}
	if out, err := exec.Command("umount", d.dir).CombinedOutput(); err != nil {
		d.log.Warn("umount, retrying lazily", "dir", d.dir, "err", err, "out", strings.TrimSpace(string(out)))
		_ = exec.Command("umount", "-l", d.dir).Run()
	}
	d.mounted = false
}

// waitFor polls cond every 200 ms until it holds or d passes; the last
// error of cond when it never held.
func waitFor(ctx context.Context, d time.Duration, cond func() error) error {
	deadline := time.Now().Add(d)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || !waitUntil(ctx, time.Now().Add(200*time.Millisecond)) {
			return err
		}
	}
}
