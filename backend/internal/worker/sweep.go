package worker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/exportstream/exportstream/backend/internal/job"
	"github.com/exportstream/exportstream/internal/service"
)

// Sweep deletes what is older than the retention period at now: finished
// jobs with their files (their file endpoint then answers 410), idempotency
// keys and old tombstones. It returns how many jobs it deleted.
func (p *Pool) Sweep(ctx context.Context, now time.Time) (int, error) {
	deleted, err := p.store.Sweep(ctx, now, p.cfg.Retention)
	errs := []error{err, p.sweepTemp(ctx, now)}
	for _, j := range deleted {
		errs = append(errs, p.RemoveFile(j.Code))
	}
	if err := errors.Join(errs...); err != nil {
		return len(deleted), fmt.Errorf("sweep: %w", err)
	}
	return len(deleted), nil
}

// sweepTemp deletes the temporary files of generations that are over: a
// process killed mid-export leaves its partial file behind, and the worker
// that resumes the job writes a file of its own. A file whose job has
// ended or is gone, untouched for a minute, is nobody's.
func (p *Pool) sweepTemp(ctx context.Context, now time.Time) error {
	entries, err := os.ReadDir(p.cfg.FilesDir)
	if err != nil {
		return fmt.Errorf("sweep temporary files: %w", err)
	}
	var errs []error
	for _, e := range entries {
		name := e.Name()
		code, _, ok := strings.Cut(name, ".")
		if !ok || !strings.HasSuffix(name, ".tmp") {
			continue
		}
		info, err := e.Info()
		if err != nil || now.Sub(info.ModTime()) < time.Minute {
			continue
		}
		j, err := p.store.Get(ctx, code)
		if err == nil && !j.Status.Terminal() || err != nil && !errors.Is(err, job.ErrNotFound) {
			continue // still being generated, here or by another replica (or the store is away)
		}
		if err := os.Remove(filepath.Join(p.cfg.FilesDir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
			continue
		}
		p.log.Info("removed a partial file left by an interrupted generation", "file", name)
	}
	return errors.Join(errs...)
}

// RunSweeper sweeps every interval until ctx is done.
func (p *Pool) RunSweeper(ctx context.Context, every time.Duration) {
	service.Every(ctx, every, func(now time.Time) {
		n, err := p.Sweep(ctx, now)
		if err != nil {
			p.log.Error("retention sweep", "err", err)
		}
		if n > 0 {
			p.log.Info("retention sweep deleted expired exports", "count", n)
		}
	})
}
