package worker_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/exportstream/exportstream/backend/internal/job"
	"github.com/exportstream/exportstream/backend/internal/store"
	"github.com/exportstream/exportstream/backend/internal/worker"
	"github.com/exportstream/exportstream/internal/exportfile"
	"github.com/exportstream/exportstream/internal/redistest"
	"github.com/exportstream/exportstream/internal/testenv"
)

// redisReplica is one backend replica's store, queue and pool on a shared
// Redis and files directory.
type redisReplica struct {
	store *store.Redis
	pool  *worker.Pool
}

func newRedisReplica(t *testing.T, url, filesDir string, claimIdle time.Duration) *redisReplica {
	t.Helper()
	return newLoggedRedisReplica(t, url, filesDir, claimIdle, slog.New(slog.DiscardHandler))
}

func newLoggedRedisReplica(t *testing.T, url, filesDir string, claimIdle time.Duration, log *slog.Logger) *redisReplica {
	t.Helper()
	st, err := store.OpenRedis(t.Context(), url, store.RedisOptions{Retention: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	q, err := worker.NewRedisQueue(t.Context(), st.Client(), worker.RedisQueueOptions{Prefix: st.Prefix(), ClaimIdle: claimIdle, MaxLen: 100}, log)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := worker.New(st, worker.Config{
		Workers: 2, QueueSize: 100, FilesDir: filesDir, ProgressInterval: 50 * time.Millisecond,
		Retention: time.Hour, Durable: true, Queue: q,
	}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return &redisReplica{store: st, pool: pool}
}

// openRedisQueue opens a store on the Redis at url and the shared queue
// on it with opts, under the store's prefix; the store closes at the
// test's end.
func openRedisQueue(t *testing.T, url string, opts worker.RedisQueueOptions) (*store.Redis, *worker.RedisQueue) {
	t.Helper()
	st, err := store.OpenRedis(t.Context(), url, store.RedisOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	opts.Prefix = st.Prefix()
	q, err := worker.NewRedisQueue(t.Context(), st.Client(), opts, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return st, q
}

// checkRun checks what a watcher saw: seq strictly increasing, progress
// never going back, exactly one terminal event, COMPLETED with the file.
func checkRun(t *testing.T, seen []job.Job, rows int) {
	t.Helper()
	terminal := 0
	for i, j := range seen {
		if i > 0 && (j.Seq <= seen[i-1].Seq || j.Progress < seen[i-1].Progress) {
			t.Errorf("event %d: seq %d progress %d after seq %d progress %d", i, j.Seq, j.Progress, seen[i-1].Seq, seen[i-1].Progress)
		}
		if j.Status.Terminal() {
			terminal++
		}
	}
	end := seen[len(seen)-1]
	if terminal != 1 || end.Status != job.StatusCompleted || end.File == nil {
		t.Fatalf("%d terminal events, ended %s %+v; want one COMPLETED", terminal, end.Status, end.Error)
	}
	if want := exportfile.SHA256(end.Code, rows); end.File.SHA256 != want {
		t.Errorf("file sha256 %s, want %s", end.File.SHA256, want)
	}
}

func TestAJobWhoseReplicaDiedIsTakenOverAfterClaimIdleFromItsCheckpoint(t *testing.T) {
	srv := redistest.Start(t)
	files := t.TempDir()
	st, q := openRedisQueue(t, srv.URL(), worker.RedisQueueOptions{})
	// A job left at 40 % by a replica that died holding its queue entry.
	j := job.New(job.Request{Rows: 1000, DurationMs: 1000}, "", time.Now().UTC())
	j.Status, j.Progress, j.RowsDone, j.Seq = job.StatusInProgress, 40, 400, 9
	if _, _, err := st.Create(t.Context(), j, ""); err != nil {
		t.Fatal(err)
	}
	if err := q.Push(t.Context(), j.Code); err != nil {
		t.Fatal(err)
	}
	if err := st.Client().XReadGroup(t.Context(), &redis.XReadGroupArgs{
		Group: "workers", Consumer: "dead-replica", Streams: []string{st.Prefix() + "queue", ">"}, Count: 1,
	}).Err(); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	survivor := newRedisReplica(t, srv.URL(), files, 500*time.Millisecond)
	seen := watchAll(t, survivor.store, j.Code)
	checkRun(t, seen, 1000)
	if took := time.Since(start); took < 500*time.Millisecond || took > 5*time.Second {
		t.Errorf("taken over and finished in %v; want after the 500 ms claim idle, and the remaining 600 ms", took)
	}
	for _, s := range seen[1:] {
		if s.Progress < 40 || s.Seq <= 9 {
			t.Errorf("after the takeover: progress %d seq %d went back", s.Progress, s.Seq)
		}
	}
	// The entry is acknowledged just after the terminal change.
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		n := st.Client().XLen(t.Context(), st.Prefix()+"queue").Val()
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d entries left in the queue after the job ended", n)
		}
	}
}

func TestAWorkerWhoseJobWasTakenOverStopsAndOneTerminalEventFollows(t *testing.T) {
	testenv.Slow(t)
	srv := redistest.Start(t)
	var logs testenv.LogBuffer
	r := newLoggedRedisReplica(t, srv.URL(), t.TempDir(), 600*time.Millisecond, slog.New(slog.NewTextHandler(&logs, nil)))
	j := job.New(job.Request{Rows: 2000, DurationMs: 2500}, "", time.Now().UTC())
	_, _, _ = r.store.Create(t.Context(), j, "")
	if err := r.pool.Submit(j.Code); err != nil {
		t.Fatal(err)
	}
	done := make(chan []job.Job)
	go func() { done <- watchAll(t, r.store, j.Code) }()
	for { // wait until it runs, then another consumer takes its entry
		if cur, _ := r.store.Get(t.Context(), j.Code); cur.Progress > 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	rdb, stream := r.store.Client(), r.store.Prefix()+"queue"
	pending := rdb.XPendingExt(t.Context(), &redis.XPendingExtArgs{Stream: stream, Group: "workers", Start: "-", End: "+", Count: 10}).Val()
	if len(pending) != 1 {
		t.Fatalf("%d pending entries, want the running job's", len(pending))
	}
	if err := rdb.XClaim(t.Context(), &redis.XClaimArgs{Stream: stream, Group: "workers", Consumer: "thief", MinIdle: 0, Messages: []string{pending[0].ID}}).Err(); err != nil {
		t.Fatal(err)
	}
	// The thief never runs it: after the claim idle the pool takes it back
	// (from the thief's silence) and finishes it from the checkpoint.
	select {
	case seen := <-done:
		checkRun(t, seen, 2000)
		if !strings.Contains(logs.String(), "taken over by another replica; stopping here") {
			t.Errorf("the worker did not notice it lost the job; logs:\n%s", logs.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the job did not finish after its takeover")
	}
}

func TestAReplicaShuttingDownHandsItsRunningJobToAnotherAtOnce(t *testing.T) {
	testenv.Slow(t)
	srv := redistest.Start(t)
	files := t.TempDir()
	leaving := newRedisReplica(t, srv.URL(), files, time.Minute)
	j := job.New(job.Request{Rows: 2000, DurationMs: 2000}, "", time.Now().UTC())
	_, _, _ = leaving.store.Create(t.Context(), j, "")
	if err := leaving.pool.Submit(j.Code); err != nil {
		t.Fatal(err)
	}
	for {
		if cur, _ := leaving.store.Get(t.Context(), j.Code); cur.Progress > 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	staying := newRedisReplica(t, srv.URL(), files, time.Minute)
	leaving.pool.Close() // SIGTERM: left at its checkpoint, handed back to the queue
	start := time.Now()
	seen := watchAll(t, staying.store, j.Code)
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("the other replica took %v to finish it; want it taken at once, not after the one-minute claim idle", took)
	}
	if end := seen[len(seen)-1]; end.Status != job.StatusCompleted || end.File.SHA256 != exportfile.SHA256(j.Code, 2000) {
		t.Errorf("ended %s with %+v", end.Status, end.File)
	}
}

func TestADeadReplicasJobsBehindManyLiveOnesAreAllTakenOver(t *testing.T) {
	srv := redistest.Start(t)
	st, q := openRedisQueue(t, srv.URL(), worker.RedisQueueOptions{ClaimIdle: time.Minute})
	rdb, stream := st.Client(), st.Prefix()+"queue"
	// 25 live jobs, running on a replica that keeps their entries fresh,
	// then 5 of a replica that died: its entries idle for an hour.
	take := func(consumer string, n int) []string {
		var ids []string
		for i := range n {
			if err := q.Push(t.Context(), fmt.Sprintf("%s-%d", consumer, i)); err != nil {
				t.Fatal(err)
			}
			res, err := rdb.XReadGroup(t.Context(), &redis.XReadGroupArgs{Group: "workers", Consumer: consumer, Streams: []string{stream, ">"}, Count: 1}).Result()
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, res[0].Messages[0].ID)
		}
		return ids
	}
	take("live", 25)
	dead := take("dead", 5)
	for _, id := range dead { // XCLAIM … IDLE sets how long the entry has been idle
		if err := rdb.Do(t.Context(), "XCLAIM", stream, "workers", "dead", 0, id, "IDLE", time.Hour.Milliseconds()).Err(); err != nil {
			t.Fatal(err)
		}
	}

	taken := map[string]bool{}
	for range dead {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		task, err := q.Pop(ctx)
		cancel()
		if err != nil {
			t.Fatalf("after taking over %d of the dead replica's 5 jobs: %v", len(taken), err)
		}
		if !strings.HasPrefix(task.Code, "dead-") || taken[task.Code] {
			t.Fatalf("took %q; want each of the dead replica's jobs once", task.Code)
		}
		taken[task.Code] = true
		task.Done()
	}
	left, err := rdb.XPendingExt(t.Context(), &redis.XPendingExtArgs{Stream: stream, Group: "workers", Start: "-", End: "+", Count: 100, Consumer: "dead"}).Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 0 {
		t.Errorf("%d entries left on the dead consumer", len(left))
	}
}

// Kills redisqueue.go:97 (the XADD's error dropped): a Redis that is full
// (maxmemory reached, noeviction) still answers reads, so the queue's
// length check passes; queueing must then report that it failed rather
// than answer as if the job were queued.
func TestQueueingIntoAFullRedisIsAnError(t *testing.T) {
	srv := redistest.Start(t)
	st, q := openRedisQueue(t, srv.URL(), worker.RedisQueueOptions{MaxLen: 100})
	if err := q.Push(t.Context(), "before"); err != nil {
		t.Fatalf("queueing with room: %v", err)
	}
	rdb := st.Client()
	if err := rdb.ConfigSet(t.Context(), "maxmemory-policy", "noeviction").Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.ConfigSet(t.Context(), "maxmemory", "1").Err(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = rdb.ConfigSet(context.Background(), "maxmemory", "0").Err() }()
	err := q.Push(t.Context(), "after")
	if err == nil {
		t.Fatal("queueing into a full Redis answered as if the job were queued")
	}
	if n, _ := rdb.XLen(t.Context(), st.Prefix()+"queue").Result(); n != 1 {
		t.Errorf("the queue holds %d entries, want the 1 from before", n)
	}
	t.Logf("a full Redis: %v", err)
}
