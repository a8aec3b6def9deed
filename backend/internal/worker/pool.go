// Package worker runs export generation on a bounded pool of goroutines.
//
// The generator is simulated but real: it writes an actual CSV (see
// job.AppendRow) in chunks paced over the requested duration, reporting
// progress through the store, and renames the file into place only when it
// is complete, so a reader never sees half a file.
package worker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/exportstream/exportstream/backend/internal/job"
	"github.com/exportstream/exportstream/backend/internal/store"
)

// Config sizes the pool.
type Config struct {
	Workers   int    // generations running at once
	QueueSize int    // accepted jobs waiting for a worker
	FilesDir  string // where finished files live
	// ProgressInterval is the least time between two progress events.
	ProgressInterval time.Duration
}

// Pool owns its worker goroutines; Close stops them and waits.
type Pool struct {
	cfg   Config
	store store.Store
	log   *slog.Logger

	queue  chan string
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	closed bool
}

// New starts cfg.Workers workers.
func New(st store.Store, cfg Config, log *slog.Logger) (*Pool, error) {
	if cfg.Workers < 1 || cfg.QueueSize < 1 {
		return nil, fmt.Errorf("worker pool: workers and queue size must be positive, got %d and %d", cfg.Workers, cfg.QueueSize)
	}
	if err := os.MkdirAll(cfg.FilesDir, 0o750); err != nil {
		return nil, fmt.Errorf("worker pool: create files dir: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Pool{cfg: cfg, store: st, log: log, queue: make(chan string, cfg.QueueSize), ctx: ctx, cancel: cancel}
	p.wg.Add(cfg.Workers)
	for range cfg.Workers {
		go p.work()
	}
	return p, nil
}

// Submit queues the job with code for generation without blocking.
func (p *Pool) Submit(code string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return job.ErrUnavailable
	}
	select {
	case p.queue <- code:
		return nil
	default:
		return job.ErrQueueFull
	}
}

// FilePath is where the finished file of code is.
func (p *Pool) FilePath(code string) string {
	return filepath.Join(p.cfg.FilesDir, code+".csv")
}

// Close stops taking jobs, interrupts running ones (they end FAILED, so no
// watcher waits forever) and waits for every worker to return.
func (p *Pool) Close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.cancel()
	p.wg.Wait()
	for {
		select {
		case code := <-p.queue:
			p.fail(code, interrupted)
		default:
			return
		}
	}
}

var interrupted = &job.Failure{Code: "INTERRUPTED", Message: "the backend stopped before the export finished; start it again"}

func (p *Pool) work() {
	defer p.wg.Done()
	for {
		select {
		case <-p.ctx.Done():
			return
		case code := <-p.queue:
			if err := p.generate(p.ctx, code); err != nil {
				p.log.Error("generation failed", "code", code, "err", err)
			}
		}
	}
}

func (p *Pool) fail(code string, f *job.Failure) {
	// The pool's context may be done already; the failure must still land.
	_, err := p.store.Update(context.WithoutCancel(p.ctx), code, func(j *job.Job) error {
		j.Status, j.Error = job.StatusFailed, f
		return nil
	})
	if err != nil {
		p.log.Error("could not mark export failed", "code", code, "err", err)
	}
}

// generate runs one job from PENDING to a terminal state.
func (p *Pool) generate(ctx context.Context, code string) (err error) {
	j, err := p.store.Update(ctx, code, func(j *job.Job) error {
		j.Status = job.StatusInProgress
		return nil
	})
	if err != nil {
		return fmt.Errorf("start %s: %w", code, err)
	}
	tmp := p.FilePath(code) + ".tmp"
	defer func() {
		if err != nil {
			_ = os.Remove(tmp)
		}
	}()
	sum, size, err := p.writeFile(ctx, j, tmp)
	var failure *job.Failure
	switch {
	case errors.As(err, &failure):
		p.fail(code, failure)
		return nil
	case ctx.Err() != nil:
		p.fail(code, interrupted)
		return nil
	case err != nil:
		p.fail(code, &job.Failure{Code: "GENERATION_FAILED", Message: "the file could not be written"})
		return fmt.Errorf("write %s: %w", code, err)
	}
	if err = os.Rename(tmp, p.FilePath(code)); err != nil {
		p.fail(code, &job.Failure{Code: "GENERATION_FAILED", Message: "the file could not be stored"})
		return fmt.Errorf("store %s: %w", code, err)
	}
	_, err = p.store.Update(ctx, code, func(j *job.Job) error {
		j.Status, j.Progress, j.RowsDone = job.StatusCompleted, 100, j.RowsTotal
		j.File = &job.File{
			Name:        job.FileName(j.Request, code),
			Size:        size,
			SHA256:      sum,
			ContentType: "text/csv; charset=utf-8",
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("complete %s: %w", code, err)
	}
	return nil
}

// writeFile writes the CSV to path in chunks paced over the requested
// duration, reporting progress, and returns its SHA-256 and size. A
// simulated failure is returned as a *job.Failure.
func (p *Pool) writeFile(ctx context.Context, j job.Job, path string) (string, int64, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o640)
	if err != nil {
		return "", 0, fmt.Errorf("create: %w", err)
	}
	defer func() { _ = f.Close() }()
	h := sha256.New()
	w := &countingWriter{w: io.MultiWriter(f, h)}

	r := j.Request
	if _, err := io.WriteString(w, job.CSVHeader); err != nil {
		return "", 0, err
	}
	chunks := min(max(r.DurationMs/50, r.Rows/50_000, 1), r.Rows)
	start := time.Now()
	lastReport := time.Time{}
	reported := 0
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
	for k := range chunks {
		from, to := k*r.Rows/chunks, (k+1)*r.Rows/chunks
		if r.FailAt != nil && from*100/r.Rows >= *r.FailAt {
			return "", 0, &job.Failure{Code: "GENERATION_FAILED", Message: fmt.Sprintf("simulated failure at %d%%", *r.FailAt)}
		}
		if err := job.WriteRows(w, j.Code, from, to); err != nil {
			return "", 0, err
		}
		// Pace against the start so the total stays near DurationMs.
		due := start.Add(time.Duration(r.DurationMs) * time.Millisecond * time.Duration(k+1) / time.Duration(chunks))
		timer.Reset(time.Until(due))
		select {
		case <-ctx.Done():
			return "", 0, ctx.Err()
		case <-timer.C:
		}
		pct := to * 100 / r.Rows
		if pct != reported && to < r.Rows && time.Since(lastReport) >= p.cfg.ProgressInterval {
			reported, lastReport = pct, time.Now()
			if _, err := p.store.Update(ctx, j.Code, func(j *job.Job) error {
				j.Progress, j.RowsDone = pct, to
				return nil
			}); err != nil {
				return "", 0, fmt.Errorf("report progress: %w", err)
			}
		}
	}
	if r.FailAt != nil && *r.FailAt == 100 {
		return "", 0, &job.Failure{Code: "GENERATION_FAILED", Message: "simulated failure at 100%"}
	}
	if err := f.Sync(); err != nil {
		return "", 0, fmt.Errorf("sync: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", 0, fmt.Errorf("close: %w", err)
	}
	return hex.EncodeToString(h.Sum(nil)), w.n, nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += int64(n)
	return n, err
}
