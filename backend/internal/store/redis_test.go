package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/exportstream/exportstream/backend/internal/job"
	"github.com/exportstream/exportstream/backend/internal/store"
	"github.com/exportstream/exportstream/internal/redistest"
	"github.com/exportstream/exportstream/internal/testenv"
)

// openRedis starts a Redis and opens a store on it, closed at the test's
// end.
func openRedis(t *testing.T) (*redistest.Server, *store.Redis) {
	t.Helper()
	srv := redistest.Start(t)
	st, err := store.OpenRedis(t.Context(), srv.URL(), store.RedisOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return srv, st
}

func TestRedisWatchersThatStopWatchingLeaveNothingBehind(t *testing.T) {
	_, st := openRedis(t)
	create := func() job.Job {
		j, _, err := st.Create(t.Context(), job.New(job.Request{Rows: 10, DurationMs: 10}, "owner", time.Now().UTC()), "")
		if err != nil {
			t.Fatal(err)
		}
		return j
	}
	ended, running := create(), create()
	if _, err := st.Update(t.Context(), ended.Code, func(j *job.Job) error { j.Status = job.StatusCompleted; return nil }); err != nil {
		t.Fatal(err)
	}

	// A stream still open on the running job: it must stay, and be woken.
	kept, keptChanged, err := st.Watch(t.Context(), running.Code)
	if err != nil {
		t.Fatal(err)
	}
	// 100 streams served for the ended job, 100 that left the running one.
	for _, code := range []string{ended.Code, running.Code} {
		for range 100 {
			ctx, cancel := context.WithCancel(t.Context())
			if _, _, err := st.Watch(ctx, code); err != nil {
				t.Fatal(err)
			}
			cancel()
		}
	}
	waitFor(t, "only the open stream's watcher left", func() bool { return st.Watchers() == 1 })

	if _, err := st.Update(t.Context(), running.Code, func(j *job.Job) error { j.Progress = 50; return nil }); err != nil {
		t.Fatal(err)
	}
	select {
	case <-keptChanged:
	case <-time.After(10 * time.Second):
		t.Fatalf("the open stream (seq %d) was not woken by the change", kept.Seq)
	}
	waitFor(t, "no watcher left once it was woken", func() bool { return st.Watchers() == 0 })
}

// waitFor polls cond until it holds, or fails after 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after 10 s: not %s", what)
		}
	}
}

func TestRedisStatsSayWhenTheyCannotBeRead(t *testing.T) {
	testenv.Slow(t)
	srv, st := openRedis(t)
	if _, _, err := st.Create(t.Context(), job.New(job.Request{Rows: 10, DurationMs: 10}, "owner", time.Now().UTC()), ""); err != nil {
		t.Fatal(err)
	}
	if _, active, err := st.Stats(t.Context()); err != nil || active["owner"] != 1 {
		t.Fatalf("stats with Redis up: %v, %v; want owner 1", active, err)
	}
	srv.Stop()
	if _, active, err := st.Stats(t.Context()); !errors.Is(err, job.ErrStoreUnavailable) {
		t.Errorf("stats with Redis away: %v, %v; want job.ErrStoreUnavailable, not empty counts", active, err)
	}
}

// Kills redis.go:470 (a failed read settled as if it had read seq 1): a
// watch of a job that is not there leaves no waiter behind, even while
// its caller's context lives on.
func TestARedisWatchOfAMissingJobLeavesNoWaiter(t *testing.T) {
	_, st := openRedis(t)
	for range 10 {
		if _, _, err := st.Watch(t.Context(), job.New(job.Request{Rows: 1}, "o", time.Now()).Code); !errors.Is(err, job.ErrNotFound) {
			t.Fatalf("watch of a missing job: %v, want not found", err)
		}
	}
	if n := st.Watchers(); n != 0 {
		t.Errorf("%d waiters left by watches that failed, want 0", n)
	}
}
