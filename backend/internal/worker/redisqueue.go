package worker

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/exportstream/exportstream/backend/internal/job"
	"github.com/exportstream/exportstream/backend/internal/store"
)

// RedisQueue is a Redis Stream read by one consumer group: every replica's
// workers are consumers, so any of them takes any job.
//
// A job stays in the stream's pending list while it runs, and its worker
// touches the entry every ClaimIdle/3. A replica that dies stops touching
// its entries; after ClaimIdle another replica's worker takes them with
// XAUTOCLAIM and resumes from the job's checkpoint. A worker that finds its
// entry taken over stops (Task.Lost). The store's compare-and-set and its
// "ended jobs never change" rule keep one terminal event per job even if
// two workers briefly run the same one.
type RedisQueue struct {
	rdb       *redis.Client
	log       *slog.Logger
	stream    string
	group     string
	consumer  string
	claimIdle time.Duration
	maxLen    int64
}

// RedisQueueOptions configures NewRedisQueue.
type RedisQueueOptions struct {
	// Prefix namespaces the stream ("<prefix>queue"), as the store's keys.
	Prefix string
	// ClaimIdle is how long a job's entry may go untouched before another
	// replica takes it over: the time to notice a dead replica. Default 30s.
	ClaimIdle time.Duration
	// MaxLen is the number of waiting plus running jobs past which Push
	// answers job.ErrQueueFull.
	MaxLen int
}

// NewRedisQueue creates the stream and its consumer group if needed.
func NewRedisQueue(ctx context.Context, rdb *redis.Client, opts RedisQueueOptions, log *slog.Logger) (*RedisQueue, error) {
	if opts.ClaimIdle <= 0 {
		opts.ClaimIdle = 30 * time.Second
	}
	if opts.MaxLen <= 0 {
		opts.MaxLen = 1000
	}
	host, _ := os.Hostname()
	q := &RedisQueue{
		rdb: rdb, log: log, stream: opts.Prefix + "queue", group: "workers",
		consumer:  fmt.Sprintf("%s-%d-%s", host, os.Getpid(), rand.Text()[:6]),
		claimIdle: opts.ClaimIdle, maxLen: int64(opts.MaxLen),
	}
	if err := q.createGroup(ctx); err != nil {
		return nil, err
	}
	return q, nil
}

// createGroup is idempotent; it also recreates the group after a Redis
// that lost its data (no AOF) comes back.
func (q *RedisQueue) createGroup(ctx context.Context) error {
	err := q.rdb.XGroupCreateMkStream(ctx, q.stream, q.group, "0").Err()
	if err != nil && !strings.HasPrefix(err.Error(), "BUSYGROUP") {
		return store.RedisError("create queue group", err)
	}
	return nil
}

// Shared is true: other replicas take from the same stream.
func (q *RedisQueue) Shared() bool { return true }

// Push adds code to the stream. The length check and the add are two
// steps, so the limit is approximate under concurrent creates.
func (q *RedisQueue) Push(ctx context.Context, code string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	n, err := q.rdb.XLen(ctx, q.stream).Result()
	if err != nil {
		return store.RedisError("queue "+code, err)
	}
	if n >= q.maxLen {
		return job.ErrQueueFull
	}
	if err := q.rdb.XAdd(ctx, &redis.XAddArgs{Stream: q.stream, Values: []string{"code", code}}).Err(); err != nil {
		return store.RedisError("queue "+code, err)
	}
	return nil
}

// Depth is the stream's length less the jobs being generated.
func (q *RedisQueue) Depth() int {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	pipe := q.rdb.Pipeline()
	n := pipe.XLen(ctx, q.stream)
	pending := pipe.XPending(ctx, q.stream, q.group)
	if _, err := pipe.Exec(ctx); err != nil {
		return 0
	}
	return int(max(n.Val()-pending.Val().Count, 0))
}

// Pop first takes over an entry idle past ClaimIdle (its replica died),
// then waits a moment for a new one, and again, until ctx is done.
func (q *RedisQueue) Pop(ctx context.Context) (*Task, error) {
	block := min(q.claimIdle/2, time.Second)
	for ctx.Err() == nil {
		claimed, err := q.claim(ctx)
		if err != nil {
			return nil, q.recover(ctx, "claim", err)
		}
		if claimed != nil {
			q.log.Warn("taking over an export whose replica stopped answering", "code", claimed.Values["code"], "entry", claimed.ID)
			t := q.task(*claimed)
			// XAUTOCLAIM counted this delivery in the entry's pending record.
			if p, err := q.rdb.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: q.stream, Group: q.group, Start: claimed.ID, End: claimed.ID, Count: 1}).Result(); err == nil && len(p) == 1 {
				t.Deliveries = p[0].RetryCount
			}
			return t, nil
		}
		streams, err := q.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{
			Group: q.group, Consumer: q.consumer, Streams: []string{q.stream, ">"}, Count: 1, Block: block,
		}).Result()
		if errors.Is(err, redis.Nil) {
			continue
		} else if err != nil {
			return nil, q.recover(ctx, "read", err)
		}
		for _, s := range streams {
			for _, m := range s.Messages {
				return q.task(m), nil
			}
		}
	}
	return nil, ctx.Err()
}

// claim takes over one entry idle past ClaimIdle, or returns nil. One
// XAUTOCLAIM looks at no more than COUNT×10 pending entries, and live
// workers keep theirs fresh, so a dead replica's entries can sit behind
// any number of live ones: it walks the cursor over the whole pending list
// (as long as the running jobs: short).
func (q *RedisQueue) claim(ctx context.Context) (*redis.XMessage, error) {
	for start := "0-0"; ; {
		claimed, next, err := q.rdb.XAutoClaim(ctx, &redis.XAutoClaimArgs{
			Stream: q.stream, Group: q.group, Consumer: q.consumer,
			MinIdle: q.claimIdle, Start: start, Count: 1,
		}).Result()
		switch {
		case err != nil:
			return nil, err
		case len(claimed) > 0:
			return &claimed[0], nil
		case next == "0-0" || next == "":
			return nil, nil
		}
		start = next
	}
}

// recover recreates the group if Redis lost it and returns err for the
// pool to back off.
func (q *RedisQueue) recover(ctx context.Context, op string, err error) error {
	if strings.HasPrefix(err.Error(), "NOGROUP") {
		if cerr := q.createGroup(ctx); cerr != nil {
			return cerr
		}
	}
	return store.RedisError("queue: "+op, err)
}

// The scripts act only while this consumer still owns the entry, so a
// worker that was taken over cannot acknowledge or touch the new owner's.
// KEYS stream; ARGV group, id, consumer, [code].
var (
	touchScript = redis.NewScript(`
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
if #p == 0 or p[1][2] ~= ARGV[3] then return 0 end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[3], 0, ARGV[2], 'JUSTID')
return 1
`)
	ackScript = redis.NewScript(`
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
if #p == 0 or p[1][2] ~= ARGV[3] then return 0 end
if ARGV[4] then redis.call('XADD', KEYS[1], '*', 'code', ARGV[4]) end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
return 1
`)
	leaveScript = redis.NewScript(`
local p = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2])
if #p == 0 then redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2]) end
return #p
`)
)

// task wraps an entry and keeps it touched until Done or Release.
func (q *RedisQueue) task(m redis.XMessage) *Task {
	code, _ := m.Values["code"].(string)
	lost := make(chan struct{})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(q.claimIdle / 3)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				ctx, cancel := context.WithTimeout(context.Background(), q.claimIdle/3)
				owned, err := touchScript.Run(ctx, q.rdb, []string{q.stream}, q.group, m.ID, q.consumer).Int()
				cancel()
				if err == nil && owned == 0 {
					close(lost)
					return
				}
			}
		}
	})
	var once sync.Once
	finish := func(requeue bool) {
		once.Do(func() {
			close(stop)
			wg.Wait()
			args := []any{q.group, m.ID, q.consumer}
			if requeue {
				args = append(args, code)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := ackScript.Run(ctx, q.rdb, []string{q.stream}, args...).Err(); err != nil {
				// Left pending: another worker takes it after ClaimIdle.
				q.log.Warn("could not acknowledge a queued export", "code", code, "err", err)
			}
		})
	}
	if code == "" { // not ours to run: drop it
		finish(false)
	}
	return &Task{Code: code, Deliveries: 1, Lost: lost, Done: func() { finish(false) }, Release: func() { finish(true) }}
}

// Close leaves the consumer group if nothing is pending for this consumer
// (a consumer with pending entries stays, so they can be claimed).
func (q *RedisQueue) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return store.RedisError("leave queue group", leaveScript.Run(ctx, q.rdb, []string{q.stream}, q.group, q.consumer).Err())
}
