package worker_test

import (
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/exportstream/exportstream/backend/internal/job"
	"github.com/exportstream/exportstream/backend/internal/store"
	"github.com/exportstream/exportstream/backend/internal/worker"
	"github.com/exportstream/exportstream/internal/redistest"
)

func TestAJobStoredButNeverQueuedIsQueuedByTheReconcilerAndFinishes(t *testing.T) {
	srv := redistest.Start(t)
	r := newRedisReplica(t, srv.URL(), t.TempDir(), 300*time.Millisecond)
	// Created as a create does, but Redis "failed" before the queue entry:
	// the job is stored PENDING and nobody has it. A fresh one is too
	// recent to touch (its create may be queueing it right now).
	now := time.Now().UTC()
	stranded := job.New(job.Request{Rows: 50, DurationMs: 100}, "", now.Add(-2*time.Minute))
	fresh := job.New(job.Request{Rows: 50, DurationMs: 100}, "", now)
	for _, j := range []job.Job{stranded, fresh} {
		if _, _, err := r.store.Create(t.Context(), j, ""); err != nil {
			t.Fatal(err)
		}
	}
	// A minute of claim idle: "fresh" stays too recent however slow the
	// machine (at 300 ms, a loaded one let it age past the cutoff).
	q, err := worker.NewRedisQueue(t.Context(), r.store.Client(), worker.RedisQueueOptions{Prefix: r.store.Prefix(), ClaimIdle: time.Minute}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	n, err := q.Reconcile(t.Context(), r.store.Unfinished)
	if err != nil || n != 1 {
		t.Fatalf("Reconcile queued %d (%v), want the stranded job only", n, err)
	}
	seen := watchAll(t, r.store, stranded.Code)
	if last := seen[len(seen)-1]; last.Status != job.StatusCompleted {
		t.Fatalf("the stranded job ended %s, want COMPLETED", last.Status)
	}
	if j, _ := r.store.Get(t.Context(), fresh.Code); j.Status != job.StatusPending {
		t.Fatalf("the fresh job is %s, want it left PENDING for its create to queue", j.Status)
	}
	// Once it holds the lock, no other replica reconciles for ClaimIdle.
	if n, err := q.Reconcile(t.Context(), r.store.Unfinished); n != 0 || err != nil {
		t.Fatalf("a second Reconcile within ClaimIdle queued %d (%v), want 0", n, err)
	}
}

// deliveredAndDied stores a short job whose queue entry n replicas took in
// turn and died with (one read it, the next ones claimed it from the
// dead), and returns the Redis and the job, for a live replica to take
// next.
func deliveredAndDied(t *testing.T, n int) (*redistest.Server, job.Job) {
	t.Helper()
	srv := redistest.Start(t)
	st, q := openRedisQueue(t, srv.URL(), worker.RedisQueueOptions{})
	j := job.New(job.Request{Rows: 100, DurationMs: 100}, "", time.Now().UTC())
	if _, _, err := st.Create(t.Context(), j, ""); err != nil {
		t.Fatal(err)
	}
	if err := q.Push(t.Context(), j.Code); err != nil {
		t.Fatal(err)
	}
	stream := st.Prefix() + "queue"
	msgs, err := st.Client().XReadGroup(t.Context(), &redis.XReadGroupArgs{Group: "workers", Consumer: "dead-0", Streams: []string{stream, ">"}, Count: 1}).Result()
	if err != nil {
		t.Fatal(err)
	}
	id := msgs[0].Messages[0].ID
	for i := 1; i < n; i++ {
		if err := st.Client().XClaim(t.Context(), &redis.XClaimArgs{Stream: stream, Group: "workers", Consumer: "dead", MinIdle: 0, Messages: []string{id}}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	return srv, j
}

func TestAJobThatTookDownEveryReplicaFailsInsteadOfTheNextOne(t *testing.T) {
	srv, j := deliveredAndDied(t, worker.MaxDeliveries)

	r := newRedisReplica(t, srv.URL(), t.TempDir(), 200*time.Millisecond)
	seen := watchAll(t, r.store, j.Code)
	last := seen[len(seen)-1]
	if last.Status != job.StatusFailed || last.Error == nil || last.Error.Code != "GENERATION_CRASHED" {
		t.Fatalf("the job ended %s %+v, want FAILED GENERATION_CRASHED", last.Status, last.Error)
	}
	for _, s := range seen {
		if s.Status == job.StatusInProgress {
			t.Fatalf("the job was started again (%+v) after %d deliveries", s, worker.MaxDeliveries)
		}
	}
}

func TestTheSweepRemovesPartialFilesOfGenerationsThatAreOverOnly(t *testing.T) {
	st := store.NewMemory()
	files := t.TempDir()
	pool, err := worker.New(st, worker.Config{Workers: 1, QueueSize: 1, FilesDir: files, Retention: time.Hour}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	now := time.Now().UTC()
	ended := job.New(job.Request{Rows: 1}, "", now)
	ended.Status = job.StatusCancelled
	running := job.New(job.Request{Rows: 1}, "", now)
	running.Status = job.StatusInProgress
	for _, j := range []job.Job{ended, running} {
		if _, _, err := st.Create(t.Context(), j, ""); err != nil {
			t.Fatal(err)
		}
	}
	old := now.Add(-time.Hour)
	partial := func(name string, at time.Time) string {
		p := filepath.Join(files, name)
		if err := os.WriteFile(p, []byte("code,row\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, at, at); err != nil {
			t.Fatal(err)
		}
		return p
	}
	gone := []string{
		partial(ended.Code+".csv.DEAD1.tmp", old),                          // its job ended
		partial("6f1c0b1e-4b7a-4c55-9c1e-3f0a8d2b7c11.csv.DEAD2.tmp", old), // its job is gone
	}
	kept := []string{
		partial(running.Code+".csv.LIVE.tmp", old),  // a replica may still be writing it
		partial(ended.Code+".csv.JUSTNOW.tmp", now), // its generation may be ending right now
		partial(ended.Code+".csv", old),             // a finished file: retention's business
	}
	if _, err := pool.Sweep(t.Context(), now); err != nil {
		t.Fatal(err)
	}
	for _, p := range gone {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s survived the sweep (%v)", filepath.Base(p), err)
		}
	}
	for _, p := range kept {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s was swept: %v", filepath.Base(p), err)
		}
	}
}
