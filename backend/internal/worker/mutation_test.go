package worker_test

// Tests added from mutation testing (make mutation, RELIABILITY.md): each
// names the surviving mutants it kills, and tests what the backend's users
// (or its operators) see.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/exportstream/exportstream/backend/internal/job"
	"github.com/exportstream/exportstream/backend/internal/store"
	"github.com/exportstream/exportstream/backend/internal/worker"
	"github.com/exportstream/exportstream/internal/exportfile"
	"github.com/exportstream/exportstream/internal/redistest"
	"github.com/exportstream/exportstream/internal/testenv"
)

// unreachableQueue is a shared queue whose server cannot be reached: every
// Pop fails at once, and the times of the attempts are recorded.
type unreachableQueue struct {
	mu    sync.Mutex
	pops  []time.Time
	limit int // past this many attempts Pop blocks, so a busy loop ends
}

func (q *unreachableQueue) Push(context.Context, string) error { return job.ErrStoreUnavailable }

func (q *unreachableQueue) Pop(ctx context.Context) (*worker.Task, error) {
	q.mu.Lock()
	q.pops = append(q.pops, time.Now())
	n := len(q.pops)
	q.mu.Unlock()
	if n > q.limit {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return nil, job.ErrStoreUnavailable
}

func (*unreachableQueue) Depth() int   { return 0 }
func (*unreachableQueue) Shared() bool { return true }

// attempts returns when each Pop came.
func (q *unreachableQueue) attempts() []time.Time {
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]time.Time(nil), q.pops...)
}

// runOneWorker runs a pool of one worker on q for d (fake time, in a
// bubble), then closes it.
func runOneWorker(t *testing.T, q worker.Queue, d time.Duration) {
	t.Helper()
	pool, err := worker.New(store.NewMemory(), worker.Config{Workers: 1, QueueSize: 1, FilesDir: t.TempDir(), Queue: q}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(d)
	pool.Close()
}

// Kills pool.go:191 (the first backoff, 100 ms, made 0): while the shared
// queue cannot be reached, a worker retries with a growing delay, not in a
// busy loop that burns a core and floods the log.
func TestAWorkerBacksOffWhileTheSharedQueueIsUnreachable(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := &unreachableQueue{limit: 50}
		runOneWorker(t, q, 2*time.Second) // the attempts of two seconds
		pops := q.attempts()
		// 0, 0.1, 0.3, 0.7 and 1.5 s: each delay twice the last.
		if len(pops) < 3 || len(pops) > 6 {
			t.Fatalf("%d attempts in 2 s, want about 5 (100 ms, doubling)", len(pops))
		}
		if gap := pops[1].Sub(pops[0]); gap < 100*time.Millisecond {
			t.Errorf("the first retry came %v after the failure, want 100 ms", gap)
		}
		for i := 2; i < len(pops); i++ {
			if prev, gap := pops[i-1].Sub(pops[i-2]), pops[i].Sub(pops[i-1]); gap < 2*prev {
				t.Errorf("retry %d came %v after the one before, want twice the previous delay (%v)", i, gap, 2*prev)
			}
		}
	})
}

// flakyQueue fails Pop twice, hands out one job (of an export that is
// gone), then fails again: a Redis that comes and goes.
type flakyQueue struct {
	unreachableQueue
	served bool
}

func (q *flakyQueue) Pop(ctx context.Context) (*worker.Task, error) {
	q.mu.Lock()
	if len(q.pops) == 2 && !q.served { // the third attempt succeeds
		q.served = true
		q.pops = append(q.pops, time.Now())
		q.mu.Unlock()
		return &worker.Task{Code: "gone", Deliveries: 1, Done: func() {}, Release: func() {}}, nil
	}
	q.mu.Unlock()
	return q.unreachableQueue.Pop(ctx)
}

// Kills pool.go:211 (the backoff reset to 0 instead of 100 ms after a
// success): a queue that comes back and goes away again is retried with
// the same growing delay as the first time, not in a busy loop.
func TestAfterTheQueueCameBackAWorkerStillBacksOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := &flakyQueue{unreachableQueue: unreachableQueue{limit: 50}}
		runOneWorker(t, q, 3*time.Second)
		pops := q.attempts()
		if len(pops) < 5 || len(pops) > 8 {
			t.Fatalf("%d attempts in 3 s, want about 6 (the job taken, then 100 ms doubling again)", len(pops))
		}
		if gap := pops[4].Sub(pops[3]); gap < 100*time.Millisecond {
			t.Errorf("the first retry after the queue went away again came after %v, want 100 ms", gap)
		}
	})
}

// Kills pool.go:419 (all four mutants of the failAt test) and covers
// pool.go:420: failAt makes the export fail there, at that percent, with
// the rows done up to it.
func TestFailAtFailsTheExportAtThatPercent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		failAt := 50
		// 200 ms in 4 chunks of 25 rows: the third starts at 50 %.
		seen, _ := generate(t, store.NewMemory(), job.Request{Rows: 100, DurationMs: 200, FailAt: &failAt})
		end := seen[len(seen)-1]
		if end.Status != job.StatusFailed || end.Error == nil || end.Error.Code != "GENERATION_FAILED" {
			t.Fatalf("ended %s %+v, want FAILED GENERATION_FAILED", end.Status, end.Error)
		}
		if end.Progress != 50 || end.RowsDone != 50 {
			t.Errorf("failed at %d%% with %d rows done, want 50%% and 50 rows", end.Progress, end.RowsDone)
		}
	})
}

// Kills pool.go:351 (the check that the job completed negated, which
// removed the file of every completed export): a completed export's file
// is there, and is the one its SHA-256 names.
func TestACompletedExportsFileIsThereAndVerifies(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := store.NewMemory()
		files := t.TempDir()
		pool, err := worker.New(st, worker.Config{Workers: 1, QueueSize: 1, FilesDir: files, ProgressInterval: 100 * time.Millisecond, Retention: time.Hour}, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		defer pool.Close()
		j := job.New(job.Request{Rows: 500, DurationMs: 100}, "", time.Now())
		_, _, _ = st.Create(t.Context(), j, "")
		if err := pool.Submit(j.Code); err != nil {
			t.Fatal(err)
		}
		seen := watchAll(t, st, j.Code)
		end := seen[len(seen)-1]
		if end.Status != job.StatusCompleted {
			t.Fatalf("ended %s", end.Status)
		}
		b, err := os.ReadFile(pool.FilePath(j.Code))
		if err != nil {
			t.Fatalf("the completed export's file: %v", err)
		}
		if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != end.File.SHA256 || int64(len(b)) != end.File.Size || end.File.SHA256 != exportfile.SHA256(j.Code, 500) {
			t.Errorf("the file (%d bytes) does not match the job's %+v", len(b), end.File)
		}
	})
}

// Kills pool.go:405 (the checkpoint's share of the duration multiplied
// instead of divided, which put the pacing's start far in the past): a job
// resumed at 50 % still takes the remaining half of its duration, its
// progress paced as before, not all at once.
func TestAResumedJobTakesTheRemainingTimeNotNone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := store.NewMemory()
		j := job.New(job.Request{Rows: 1000, DurationMs: 2000}, "", time.Now())
		j.Status, j.Progress, j.RowsDone, j.Seq = job.StatusInProgress, 50, 500, 5
		_, _, _ = st.Create(t.Context(), j, "")
		pool, err := worker.New(st, worker.Config{Workers: 1, QueueSize: 1, FilesDir: t.TempDir(), ProgressInterval: 100 * time.Millisecond, Retention: time.Hour, Durable: true}, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		defer pool.Close()
		start := time.Now()
		if err := pool.Resume(t.Context()); err != nil {
			t.Fatal(err)
		}
		seen := watchAll(t, st, j.Code)
		if took := time.Since(start); took < 900*time.Millisecond || took > 1200*time.Millisecond {
			t.Errorf("resuming at 50%% of 2 s took %v, want about the remaining 1 s", took)
		}
		if end := seen[len(seen)-1]; end.Status != job.StatusCompleted {
			t.Errorf("ended %s", end.Status)
		}
	})
}

// Kills pool.go:169 (a warning for a queue that closed fine), pool.go:226
// (an error logged for a generation that succeeded) and pool.go:276 (an
// error logged for a failure that was stored): the operator's log has
// warnings and errors only when something went wrong.
func TestTheLogStaysQuietWhenNothingWentWrong(t *testing.T) {
	t.Run("a completed export on a shared queue, then shutdown", func(t *testing.T) {
		srv := redistest.Start(t)
		var logs testenv.LogBuffer
		r := newLoggedRedisReplica(t, srv.URL(), t.TempDir(), time.Minute, slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn})))
		j := job.New(job.Request{Rows: 50, DurationMs: 50}, "", time.Now().UTC())
		if _, _, err := r.store.Create(t.Context(), j, ""); err != nil {
			t.Fatal(err)
		}
		if err := r.pool.Submit(j.Code); err != nil {
			t.Fatal(err)
		}
		if end := watchAll(t, r.store, j.Code); end[len(end)-1].Status != job.StatusCompleted {
			t.Fatalf("ended %s", end[len(end)-1].Status)
		}
		r.pool.Close()
		if got := logs.String(); got != "" {
			t.Errorf("warnings or errors logged for an export that went well:\n%s", got)
		}
	})
	t.Run("exports failed as INTERRUPTED by a shutdown", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			st := store.NewMemory()
			var logs testenv.LogBuffer
			codes := shutDownRunningAndQueued(t, st, slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn})))
			for _, code := range codes {
				if j, _ := st.Get(t.Context(), code); j.Status != job.StatusFailed || j.Error == nil || j.Error.Code != "INTERRUPTED" {
					t.Errorf("after the shutdown %s is %s %+v, want FAILED INTERRUPTED", code, j.Status, j.Error)
				}
			}
			if got := logs.String(); strings.Contains(got, "could not mark export failed") {
				t.Errorf("a stored failure was logged as not stored:\n%s", got)
			}
		})
	})
}

// Kills pool.go:212 (> MaxDeliveries as >=): a job may be taken by
// MaxDeliveries workers in turn; the last of them still runs it to its
// end instead of failing it as a crasher.
func TestTheLastAllowedDeliveryOfAJobStillRunsIt(t *testing.T) {
	// MaxDeliveries-1 replicas took it in turn and died with it; the next
	// one to take it is the last allowed.
	srv, j := deliveredAndDied(t, worker.MaxDeliveries-1)
	r := newRedisReplica(t, srv.URL(), t.TempDir(), 200*time.Millisecond)
	seen := watchAll(t, r.store, j.Code)
	checkRun(t, seen, 100)
}

// Kills redisqueue.go:54 and redisqueue.go:55 (the ClaimIdle default,
// 30 s, lost for a zero option): a replica whose queue is opened without a
// ClaimIdle still runs its jobs.
func TestAQueueOpenedWithoutAClaimIdleRunsJobs(t *testing.T) {
	srv := redistest.Start(t)
	st, q := openRedisQueue(t, srv.URL(), worker.RedisQueueOptions{})
	pool, err := worker.New(st, worker.Config{Workers: 1, QueueSize: 10, FilesDir: t.TempDir(), ProgressInterval: 50 * time.Millisecond, Retention: time.Hour, Durable: true, Queue: q}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	j := job.New(job.Request{Rows: 100, DurationMs: 100}, "", time.Now().UTC())
	if _, _, err := st.Create(t.Context(), j, ""); err != nil {
		t.Fatal(err)
	}
	if err := pool.Submit(j.Code); err != nil {
		t.Fatal(err)
	}
	done := make(chan []job.Job, 1)
	go func() { done <- watchAll(t, st, j.Code) }()
	select {
	case seen := <-done:
		checkRun(t, seen, 100)
	case <-time.After(20 * time.Second):
		t.Fatal("the job did not finish within 20 s")
	}
}

// Kills redisqueue.go:94 (>= MaxLen as >): the shared queue holds MaxLen
// jobs, and the next create is refused as a full queue (429).
func TestTheSharedQueueRefusesJobsPastMaxLen(t *testing.T) {
	srv := redistest.Start(t)
	_, q := openRedisQueue(t, srv.URL(), worker.RedisQueueOptions{MaxLen: 2})
	for i, want := range []error{nil, nil, job.ErrQueueFull} {
		if err := q.Push(t.Context(), job.New(job.Request{Rows: 1}, "", time.Now()).Code); !errors.Is(err, want) {
			t.Fatalf("push %d into a queue of 2: %v, want %v", i+1, err, want)
		}
	}
}

// Covers and kills redisqueue.go:110 and :113 (Depth, which no worker
// test read): the queue's depth counts the jobs waiting for a worker, not
// those being generated.
func TestTheSharedQueuesDepthCountsOnlyWaitingJobs(t *testing.T) {
	srv := redistest.Start(t)
	_, q := openRedisQueue(t, srv.URL(), worker.RedisQueueOptions{ClaimIdle: time.Minute})
	if d := q.Depth(); d != 0 {
		t.Fatalf("depth of an empty queue: %d", d)
	}
	for range 3 {
		if err := q.Push(t.Context(), job.New(job.Request{Rows: 1}, "", time.Now()).Code); err != nil {
			t.Fatal(err)
		}
	}
	task, err := q.Pop(t.Context()) // one is taken by a worker
	if err != nil {
		t.Fatal(err)
	}
	defer task.Done()
	if d := q.Depth(); d != 2 {
		t.Errorf("depth with 3 queued and 1 taken: %d, want 2", d)
	}
}

// Kills pool.go:153 (RemoveFile's not-exist check negated): a FAILED or
// CANCELLED export has no file, and retention deleting it is no error.
func TestRetentionDeletesExportsWithoutAFileWithoutAnError(t *testing.T) {
	st := store.NewMemory()
	pool, err := worker.New(st, worker.Config{Workers: 1, QueueSize: 1, FilesDir: t.TempDir(), Retention: time.Hour}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	then := time.Now().UTC().Add(-2 * time.Hour)
	var codes []string
	for _, status := range []job.Status{job.StatusFailed, job.StatusCancelled} {
		j := job.New(job.Request{Rows: 1}, "", then)
		j.Status = status
		if _, _, err := st.Create(t.Context(), j, ""); err != nil {
			t.Fatal(err)
		}
		codes = append(codes, j.Code)
	}
	n, err := pool.Sweep(t.Context(), time.Now())
	if err != nil || n != 2 {
		t.Fatalf("sweep: %d deleted, %v; want 2 and no error", n, err)
	}
	for _, code := range codes {
		if _, err := st.Get(t.Context(), code); err == nil {
			t.Errorf("%s outlived its retention", code)
		}
	}
}
