package worker

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/exportstream/exportstream/backend/internal/job"
	"github.com/exportstream/exportstream/backend/internal/store"
	"github.com/exportstream/exportstream/internal/service"
)

// Reconcile queues the unfinished jobs that have no entry in the stream
// and have not changed for ClaimIdle. A create stores its job, then
// queues it: two steps, so Redis failing between them would leave the job
// PENDING with nobody to run it. One replica at a time does it (a lock
// key that expires after ClaimIdle); it returns how many it queued.
func (q *RedisQueue) Reconcile(ctx context.Context, unfinished func(context.Context) ([]job.Job, error)) (int, error) {
	got, err := q.rdb.SetNX(ctx, q.stream+":reconcile", q.consumer, q.claimIdle).Result()
	if err != nil || !got {
		return 0, store.RedisError("reconcile lock", err)
	}
	// Listed before the stream is read: a job created in between has its
	// entry already, or is too recent to be touched.
	jobs, err := unfinished(ctx)
	if err != nil {
		return 0, fmt.Errorf("reconcile: %w", err)
	}
	entries, err := q.rdb.XRange(ctx, q.stream, "-", "+").Result()
	if err != nil {
		return 0, store.RedisError("reconcile: read queue", err)
	}
	queued := make(map[string]bool, len(entries))
	for _, e := range entries {
		if code, ok := e.Values["code"].(string); ok {
			queued[code] = true
		}
	}
	cutoff := time.Now().Add(-q.claimIdle)
	n := 0
	for _, j := range jobs {
		if queued[j.Code] || j.UpdatedAt.After(cutoff) {
			continue
		}
		if err := q.rdb.XAdd(ctx, &redis.XAddArgs{Stream: q.stream, Values: []string{"code", j.Code}}).Err(); err != nil {
			return n, store.RedisError("reconcile: queue "+j.Code, err)
		}
		q.log.Warn("queued an export that was stored but never queued", "code", j.Code, "status", j.Status)
		n++
	}
	return n, nil
}

// RunReconciler reconciles every ClaimIdle until ctx is done.
func (q *RedisQueue) RunReconciler(ctx context.Context, unfinished func(context.Context) ([]job.Job, error)) {
	service.Every(ctx, q.claimIdle, func(time.Time) {
		if _, err := q.Reconcile(ctx, unfinished); err != nil && ctx.Err() == nil {
			q.log.Warn("reconcile the queue", "err", err)
		}
	})
}
