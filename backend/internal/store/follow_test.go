package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/exportstream/exportstream/backend/internal/job"
	"github.com/exportstream/exportstream/backend/internal/store"
)

// followed runs store.Follow in the background and hands over what it yields.
type followed struct {
	snaps chan job.Job
	err   chan error
}

func follow(t *testing.T, st store.Store, code, owner string, after int64) followed {
	t.Helper()
	f := followed{snaps: make(chan job.Job, 100), err: make(chan error, 1)}
	go func() {
		f.err <- store.Follow(t.Context(), st, code, owner, after, nil, func(j job.Job) error { f.snaps <- j; return nil })
	}()
	return f
}

func (f followed) next(t *testing.T) job.Job {
	t.Helper()
	select {
	case j := <-f.snaps:
		return j
	case err := <-f.err:
		f.err <- err // for end
		select {
		case j := <-f.snaps: // yielded just before it ended
			return j
		default:
			t.Fatalf("follow ended (%v) before the awaited snapshot", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no snapshot within 10 s")
	}
	return job.Job{}
}

func (f followed) end(t *testing.T) error {
	t.Helper()
	select {
	case err := <-f.err:
		if len(f.snaps) > 0 {
			t.Errorf("follow ended with %d snapshots not taken", len(f.snaps))
		}
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("follow did not end within 10 s")
	}
	return nil
}

var followContract = []contractCase{
	{"follow yields what is newer than the seq, each change, and ends after the terminal snapshot", func(t *testing.T, st store.Store) {
		j, _, _ := st.Create(t.Context(), job.New(job.Request{Rows: 10}, "alice", time.Now().UTC()), "")
		f := follow(t, st, j.Code, "alice", 0)
		if got := f.next(t); got.Seq != 1 {
			t.Fatalf("first snapshot seq %d, want the current one, 1", got.Seq)
		}
		for p := 1; p <= 3; p++ {
			if _, err := st.Update(t.Context(), j.Code, setProgress(p*10)); err != nil {
				t.Fatal(err)
			}
			if got := f.next(t); got.Seq != int64(p+1) || got.Progress != p*10 {
				t.Fatalf("after change %d: seq %d progress %d", p, got.Seq, got.Progress)
			}
		}
		if _, err := st.Update(t.Context(), j.Code, func(j *job.Job) error { j.Status = job.StatusCompleted; return nil }); err != nil {
			t.Fatal(err)
		}
		if got := f.next(t); got.Status != job.StatusCompleted {
			t.Fatalf("last snapshot %s, want COMPLETED", got.Status)
		}
		if err := f.end(t); err != nil {
			t.Fatalf("follow of an ended job returned %v, want nil", err)
		}
	}},
	{"follow from a seq skips what is not newer, and yields nothing for a job ended at it", func(t *testing.T, st store.Store) {
		j, _, _ := st.Create(t.Context(), job.New(job.Request{Rows: 10}, "alice", time.Now().UTC()), "")
		done, _ := st.Update(t.Context(), j.Code, func(j *job.Job) error { j.Status = job.StatusFailed; return nil })
		if got := follow(t, st, j.Code, "alice", done.Seq-1).next(t); got.Seq != done.Seq {
			t.Errorf("from %d: seq %d, want %d", done.Seq-1, got.Seq, done.Seq)
		}
		if err := follow(t, st, j.Code, "alice", done.Seq).end(t); err != nil {
			t.Errorf("from the terminal seq: %v, want nil and nothing yielded", err)
		}
	}},
	{"follow of another owner's, an unknown or a deleted job is not found, and yields none of its data", func(t *testing.T, st store.Store) {
		j, _, _ := st.Create(t.Context(), job.New(job.Request{Rows: 10}, "alice", time.Now().UTC()), "")
		if err := follow(t, st, j.Code, "mallory", 0).end(t); !errors.Is(err, job.ErrNotFound) {
			t.Errorf("another owner: %v, want not found", err)
		}
		if err := follow(t, st, job.New(job.Request{Rows: 1}, "", time.Now()).Code, "alice", 0).end(t); !errors.Is(err, job.ErrNotFound) {
			t.Errorf("an unknown code: %v, want not found", err)
		}
		f := follow(t, st, j.Code, "alice", 0)
		f.next(t)
		if err := st.Delete(t.Context(), j.Code); err != nil {
			t.Fatal(err)
		}
		if err := f.end(t); !errors.Is(err, job.ErrNotFound) {
			t.Errorf("deleted while followed: %v, want not found", err)
		}
	}},
	{"follow stops when its context ends or yield fails", func(t *testing.T, st store.Store) {
		j, _, _ := st.Create(t.Context(), job.New(job.Request{Rows: 10}, "alice", time.Now().UTC()), "")
		ctx, cancel := context.WithCancel(t.Context())
		errc := make(chan error, 1)
		go func() { errc <- store.Follow(ctx, st, j.Code, "alice", 1, nil, func(job.Job) error { return nil }) }()
		cancel()
		if err := <-errc; !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled: %v, want context.Canceled", err)
		}
		stop := errors.New("stop")
		if err := store.Follow(t.Context(), st, j.Code, "alice", 0, nil, func(job.Job) error { return stop }); !errors.Is(err, stop) {
			t.Errorf("yield failed: %v, want its error", err)
		}
	}},
}

func TestEveryStoreIsFollowedTheSameWay(t *testing.T) {
	runOnEveryStore(t, followContract)
}
