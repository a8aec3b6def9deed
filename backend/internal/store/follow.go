package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/exportstream/exportstream/backend/internal/job"
)

// Follow is the loop that follows a job for a per-job event stream. A
// subscription of the multiplexed stream keeps the same contract without
// a goroutine of its own, with WatchNotify (package eventmux).
//
// It calls yield with each snapshot of owner's job code whose seq is
// greater than after, in seq order: the current snapshot at once, then the
// latest one after each change, so a slow yield skips intermediate
// snapshots but never the terminal one. It returns nil once the terminal
// snapshot has been yielded, or at once when the job ended at or before
// after (nothing newer will ever come); job.ErrNotFound when the job does
// not exist, is another owner's or is deleted meanwhile; yield's or wait's
// error; and any other error of the store, wrapped.
//
// wait blocks until changed is closed; the per-job stream's also sends
// heartbeats while it waits. nil waits for changed or ctx.
func Follow(ctx context.Context, st Store, code, owner string, after int64,
	wait func(ctx context.Context, changed <-chan struct{}) error,
	yield func(job.Job) error,
) error {
	if wait == nil {
		wait = waitForChange
	}
	for {
		snap, changed, err := st.Watch(ctx, code)
		switch {
		case errors.Is(err, job.ErrNotFound):
			return job.ErrNotFound
		case err != nil:
			return fmt.Errorf("follow %s: %w", code, err)
		case snap.Owner != owner:
			return job.ErrNotFound // never another owner's data
		}
		if snap.Seq > after {
			if err := yield(snap); err != nil {
				return err
			}
			after = snap.Seq
		}
		if snap.Status.Terminal() {
			return nil
		}
		if err := wait(ctx, changed); err != nil {
			return err
		}
	}
}

func waitForChange(ctx context.Context, changed <-chan struct{}) error {
	select {
	case <-changed:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
