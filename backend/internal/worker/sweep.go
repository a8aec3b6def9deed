package worker

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Sweep deletes what is older than the retention period at now: finished
// jobs with their files (their file endpoint then answers 410), idempotency
// keys and old tombstones. It returns how many jobs it deleted.
func (p *Pool) Sweep(ctx context.Context, now time.Time) (int, error) {
	deleted, err := p.store.Sweep(ctx, now, p.cfg.Retention)
	errs := []error{err}
	for _, j := range deleted {
		errs = append(errs, p.RemoveFile(j.Code))
	}
	if err := errors.Join(errs...); err != nil {
		return len(deleted), fmt.Errorf("sweep: %w", err)
	}
	return len(deleted), nil
}

// RunSweeper sweeps every interval until ctx is done.
func (p *Pool) RunSweeper(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			n, err := p.Sweep(ctx, now)
			if err != nil {
				p.log.Error("retention sweep", "err", err)
			}
			if n > 0 {
				p.log.Info("retention sweep deleted expired exports", "count", n)
			}
		}
	}
}
