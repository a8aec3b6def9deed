package store_test

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/exportstream/exportstream/backend/internal/job"
	"github.com/exportstream/exportstream/backend/internal/store"
	"github.com/exportstream/exportstream/internal/redistest"
)

// The Store contract: every behaviour below runs against each
// implementation (in memory, bbolt, Redis), so the scaled-out backend keeps
// exactly the guarantees of the embedded one.

// implementation opens fresh stores; setup runs once per implementation
// (the Redis one starts a server there, and each store gets its own prefix).
type implementation struct {
	name  string
	setup func(t *testing.T) (open func(t *testing.T) store.Store)
}

var redisPrefixes atomic.Int64

var implementations = []implementation{
	{"memory", func(*testing.T) func(*testing.T) store.Store {
		return func(*testing.T) store.Store { return store.NewMemory() }
	}},
	{"bbolt", func(*testing.T) func(*testing.T) store.Store {
		return func(t *testing.T) store.Store {
			st, err := store.Open(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			return st
		}
	}},
	{"redis", func(t *testing.T) func(*testing.T) store.Store {
		url := redistest.Start(t).URL()
		return func(t *testing.T) store.Store {
			st, err := store.OpenRedis(t.Context(), url, store.RedisOptions{
				Prefix:    fmt.Sprintf("contract%d:", redisPrefixes.Add(1)),
				Retention: time.Hour,
			})
			if err != nil {
				t.Fatal(err)
			}
			return st
		}
	}},
}

// createdInOrder creates n jobs of owner's on st, created a second apart
// from base, and returns their codes oldest first.
func createdInOrder(t *testing.T, st store.Store, owner string, base time.Time, n int) []string {
	t.Helper()
	var codes []string
	for i := range n {
		j := job.New(job.Request{Rows: 1}, owner, base.Add(time.Duration(i)*time.Second))
		if _, _, err := st.Create(t.Context(), j, ""); err != nil {
			t.Fatal(err)
		}
		codes = append(codes, j.Code)
	}
	return codes
}

// contractCase is one property every store keeps, tested on a fresh one.
type contractCase struct {
	name string
	test func(t *testing.T, st store.Store)
}

// runOnEveryStore runs each case on a fresh store of every implementation.
func runOnEveryStore(t *testing.T, cases []contractCase) {
	for _, impl := range implementations {
		t.Run(impl.name, func(t *testing.T) {
			open := impl.setup(t)
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					st := open(t)
					defer func() { _ = st.Close() }()
					c.test(t, st)
				})
			}
		})
	}
}

var contract = []contractCase{
	{"a created job reads back as it was, with seq 1", func(t *testing.T, st store.Store) {
		j := job.New(job.Request{Rows: 5, DurationMs: 10, Filename: "x"}, "alice", time.Now().UTC())
		if _, created, err := st.Create(t.Context(), j, ""); err != nil || !created {
			t.Fatalf("create: %v %v", created, err)
		}
		got, err := st.Get(t.Context(), j.Code)
		if err != nil || got.Seq != 1 || got.Owner != "alice" || got.Request != j.Request || !got.CreatedAt.Equal(j.CreatedAt) || got.Status != job.StatusPending {
			t.Errorf("got %+v, %v; want %+v", got, err, j)
		}
		if _, _, err := st.Create(t.Context(), j, ""); err == nil {
			t.Error("creating the same code twice succeeded")
		}
	}},
	{"an unknown code is not found everywhere", func(t *testing.T, st store.Store) {
		code := job.New(job.Request{Rows: 1}, "", time.Now()).Code
		_, err1 := st.Get(t.Context(), code)
		_, err2 := st.Update(t.Context(), code, func(*job.Job) error { return nil })
		_, _, err3 := st.Watch(t.Context(), code)
		err4 := st.Delete(t.Context(), code)
		for i, err := range []error{err1, err2, err3, err4} {
			if !errors.Is(err, job.ErrNotFound) {
				t.Errorf("call %d: %v, want not found", i+1, err)
			}
		}
		if _, gone, err := st.Expired(t.Context(), code); gone || err != nil {
			t.Errorf("expired: %v %v", gone, err)
		}
	}},
	{"an idempotency key replays its job, refuses another body and is per owner", func(t *testing.T, st store.Store) {
		r := job.Request{Rows: 10}
		first, _, _ := st.Create(t.Context(), job.New(r, "alice", time.Now().UTC()), "k")
		again, created, err := st.Create(t.Context(), job.New(r, "alice", time.Now().UTC()), "k")
		if err != nil || created || again.Code != first.Code {
			t.Errorf("replay: %s created=%v %v; want %s", again.Code, created, err, first.Code)
		}
		if _, _, err := st.Create(t.Context(), job.New(job.Request{Rows: 11}, "alice", time.Now().UTC()), "k"); !errors.Is(err, job.ErrKeyReused) {
			t.Errorf("other body: %v, want ErrKeyReused", err)
		}
		other, created, err := st.Create(t.Context(), job.New(r, "bob", time.Now().UTC()), "k")
		if err != nil || !created || other.Code == first.Code {
			t.Errorf("other owner's key: created=%v %v", created, err)
		}
	}},
	{"concurrent creates with one key make one job", func(t *testing.T, st store.Store) {
		r := job.Request{Rows: 10}
		codes := make(chan string, 8)
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				j, _, err := st.Create(t.Context(), job.New(r, "alice", time.Now().UTC()), "same")
				if err != nil {
					t.Error(err)
				}
				codes <- j.Code
			})
		}
		wg.Wait()
		close(codes)
		seen := map[string]bool{}
		for c := range codes {
			seen[c] = true
		}
		if jobs, _ := st.List(t.Context(), "alice"); len(seen) != 1 || len(jobs) != 1 {
			t.Errorf("%d distinct codes, %d jobs; want 1", len(seen), len(jobs))
		}
	}},
	{"an update bumps seq by one and a failing change stores nothing", func(t *testing.T, st store.Store) {
		j := job.New(job.Request{Rows: 100}, "", time.Now().UTC())
		_, _, _ = st.Create(t.Context(), j, "")
		next, err := st.Update(t.Context(), j.Code, setProgress(10))
		if err != nil || next.Seq != 2 || next.Progress != 10 || next.Status != job.StatusInProgress {
			t.Fatalf("update: %+v %v", next, err)
		}
		boom := errors.New("no")
		if _, err := st.Update(t.Context(), j.Code, func(j *job.Job) error { j.Progress = 99; return boom }); !errors.Is(err, boom) {
			t.Fatalf("failing change: %v", err)
		}
		if got, _ := st.Get(t.Context(), j.Code); got.Seq != 2 || got.Progress != 10 {
			t.Errorf("after a failed change: seq %d progress %d", got.Seq, got.Progress)
		}
	}},
	{"concurrent updates lose none and seq counts every one", func(t *testing.T, st store.Store) {
		j := job.New(job.Request{Rows: 100}, "", time.Now().UTC())
		_, _, _ = st.Create(t.Context(), j, "")
		var wg sync.WaitGroup
		for range 10 {
			wg.Go(func() {
				for range 10 {
					if _, err := st.Update(t.Context(), j.Code, func(j *job.Job) error { j.RowsDone++; return nil }); err != nil {
						t.Error(err)
					}
				}
			})
		}
		wg.Wait()
		if got, _ := st.Get(t.Context(), j.Code); got.RowsDone != 100 || got.Seq != 101 {
			t.Errorf("rowsDone %d seq %d, want 100 and 101", got.RowsDone, got.Seq)
		}
	}},
	{"watch gives the snapshot and a channel closed at the next change and at deletion", func(t *testing.T, st store.Store) {
		j := job.New(job.Request{Rows: 100}, "", time.Now().UTC())
		_, _, _ = st.Create(t.Context(), j, "")
		snap, changed, err := st.Watch(t.Context(), j.Code)
		if err != nil || snap.Seq != 1 {
			t.Fatalf("watch: %+v %v", snap, err)
		}
		select {
		case <-changed:
			t.Fatal("closed before any change")
		case <-time.After(50 * time.Millisecond):
		}
		_, _ = st.Update(t.Context(), j.Code, setProgress(5))
		waitClosed(t, changed, "after an update")
		if snap, _, _ := st.Watch(t.Context(), j.Code); snap.Seq != 2 {
			t.Errorf("re-read seq %d, want 2", snap.Seq)
		}
		_, changed, _ = st.Watch(t.Context(), j.Code)
		if err := st.Delete(t.Context(), j.Code); err != nil {
			t.Fatal(err)
		}
		waitClosed(t, changed, "after a deletion")
	}},
	{"watch notify wakes once at the next change of its job, at deletion, and never after unwatch", func(t *testing.T, st store.Store) {
		a := job.New(job.Request{Rows: 100}, "", time.Now().UTC())
		b := job.New(job.Request{Rows: 100}, "", time.Now().UTC())
		_, _, _ = st.Create(t.Context(), a, "")
		_, _, _ = st.Create(t.Context(), b, "")
		// watchA watches a from its current snapshot, which must be seq.
		watchA := func(seq int64) *countingWaker {
			t.Helper()
			w := newCountingWaker()
			snap, err := st.WatchNotify(t.Context(), a.Code, w)
			if err != nil || snap.Seq != seq {
				t.Fatalf("watch notify: seq %d, %v; want seq %d", snap.Seq, err, seq)
			}
			return w
		}
		first := watchA(1)
		// Another job's change does not wake it (b's own waker, woken
		// after, shows the notification has been through).
		other := newCountingWaker()
		_, _ = st.WatchNotify(t.Context(), b.Code, other)
		_, _ = st.Update(t.Context(), b.Code, setProgress(5))
		other.wait(t, "after b's update")
		if n := first.count.Load(); n != 0 {
			t.Fatalf("woken %d times by another job's change", n)
		}
		_, _ = st.Update(t.Context(), a.Code, setProgress(5))
		first.wait(t, "after an update")
		// Once: the next change wakes a later watcher, not the first again.
		second := watchA(2)
		unwatched := watchA(2)
		st.Unwatch(a.Code, unwatched)
		_, _ = st.Update(t.Context(), a.Code, setProgress(6))
		second.wait(t, "after the second update")
		if n, m := first.count.Load(), unwatched.count.Load(); n != 1 || m != 0 {
			t.Errorf("woken %d times (want 1) and after unwatch %d (want 0)", n, m)
		}
		deleted := watchA(3)
		if err := st.Delete(t.Context(), a.Code); err != nil {
			t.Fatal(err)
		}
		deleted.wait(t, "after a deletion")
		if _, err := st.WatchNotify(t.Context(), a.Code, newCountingWaker()); !errors.Is(err, job.ErrNotFound) {
			t.Errorf("watch notify of a deleted job: %v, want not found", err)
		}
	}},
	{"list returns only the owner's jobs, newest first", func(t *testing.T, st store.Store) {
		base := time.Now().UTC()
		want := createdInOrder(t, st, "alice", base, 3)
		slices.Reverse(want) // newest first
		_, _, _ = st.Create(t.Context(), job.New(job.Request{Rows: 1}, "bob", base), "")
		got, err := st.List(t.Context(), "alice")
		if err != nil || len(got) != 3 {
			t.Fatalf("list: %d jobs, %v", len(got), err)
		}
		for i := range want {
			if got[i].Code != want[i] {
				t.Errorf("list[%d] = %s, want %s", i, got[i].Code, want[i])
			}
		}
		if none, _ := st.List(t.Context(), "carol"); len(none) != 0 {
			t.Errorf("carol sees %d jobs", len(none))
		}
	}},
	{"delete removes the job from lists; its key refuses a late replay of the create", func(t *testing.T, st store.Store) {
		j := job.New(job.Request{Rows: 1}, "alice", time.Now().UTC())
		_, _, _ = st.Create(t.Context(), j, "k")
		if err := st.Delete(t.Context(), j.Code); err != nil {
			t.Fatal(err)
		}
		if jobs, _ := st.List(t.Context(), "alice"); len(jobs) != 0 {
			t.Errorf("list after delete: %d", len(jobs))
		}
		// A retry of the create that arrives after the delete (its first
		// answer was lost) must not start the deleted export again.
		if again, created, err := st.Create(t.Context(), job.New(j.Request, "alice", time.Now().UTC()), "k"); !errors.Is(err, job.ErrKeyOfDeletedExport) || created {
			t.Errorf("replay after delete: %s created=%v %v; want job.ErrKeyOfDeletedExport", again.Code, created, err)
		}
		if jobs, _ := st.List(t.Context(), "alice"); len(jobs) != 0 {
			t.Errorf("list after the replay: %d jobs", len(jobs))
		}
		if _, created, err := st.Create(t.Context(), job.New(j.Request, "alice", time.Now().UTC()), "k2"); err != nil || !created {
			t.Errorf("a new key after delete: created=%v %v", created, err)
		}
	}},
	{"unfinished lists running jobs oldest first and stats count them", func(t *testing.T, st store.Store) {
		base := time.Now().UTC()
		a := job.New(job.Request{Rows: 1}, "alice", base)
		b := job.New(job.Request{Rows: 1}, "alice", base.Add(time.Second))
		c := job.New(job.Request{Rows: 1}, "bob", base.Add(2*time.Second))
		for _, j := range []job.Job{b, c, a} {
			_, _, _ = st.Create(t.Context(), j, "")
		}
		_, _ = st.Update(t.Context(), b.Code, setProgress(50))
		_, _ = st.Update(t.Context(), c.Code, func(j *job.Job) error { j.Status = job.StatusCompleted; return nil })
		got, _ := st.Unfinished(t.Context())
		if len(got) != 2 || got[0].Code != a.Code || got[1].Code != b.Code {
			t.Errorf("unfinished = %v, want a then b", got)
		}
		byStatus, active, err := st.Stats(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if byStatus[job.StatusPending] != 1 || byStatus[job.StatusInProgress] != 1 || byStatus[job.StatusCompleted] != 1 || active["alice"] != 2 || active["bob"] != 0 {
			t.Errorf("stats: %v %v", byStatus, active)
		}
		_ = st.Delete(t.Context(), a.Code)
		_ = st.Delete(t.Context(), c.Code)
		byStatus, active, err = st.Stats(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if byStatus[job.StatusPending] != 0 || byStatus[job.StatusCompleted] != 0 || active["alice"] != 1 {
			t.Errorf("stats after deleting: %v %v", byStatus, active)
		}
	}},
	{"sweep deletes ended jobs past retention, leaves a tombstone and expires keys", func(t *testing.T, st store.Store) {
		now := time.Now().UTC()
		done := job.New(job.Request{Rows: 1}, "alice", now)
		failed := job.New(job.Request{Rows: 2}, "alice", now)
		running := job.New(job.Request{Rows: 3}, "alice", now)
		_, _, _ = st.Create(t.Context(), done, "k1")
		_, _, _ = st.Create(t.Context(), failed, "")
		_, _, _ = st.Create(t.Context(), running, "")
		_, _ = st.Update(t.Context(), done.Code, func(j *job.Job) error {
			j.Status, j.File = job.StatusCompleted, &job.File{Name: "x.csv"}
			return nil
		})
		_, _ = st.Update(t.Context(), failed.Code, func(j *job.Job) error { j.Status = job.StatusFailed; return nil })
		if deleted, err := st.Sweep(t.Context(), now.Add(30*time.Minute), time.Hour); err != nil || len(deleted) != 0 {
			t.Fatalf("sweep within retention deleted %d, %v", len(deleted), err)
		}
		later := now.Add(2 * time.Hour)
		deleted, err := st.Sweep(t.Context(), later, time.Hour)
		if err != nil || len(deleted) != 2 {
			t.Fatalf("sweep deleted %d, %v; want the 2 ended jobs", len(deleted), err)
		}
		if _, err := st.Get(t.Context(), running.Code); err != nil {
			t.Errorf("the running job was swept: %v", err)
		}
		if owner, gone, _ := st.Expired(t.Context(), done.Code); !gone || owner != "alice" {
			t.Errorf("tombstone of the file: %q %v", owner, gone)
		}
		if _, gone, _ := st.Expired(t.Context(), failed.Code); gone {
			t.Error("a tombstone for a job without a file")
		}
		if j, created, _ := st.Create(t.Context(), job.New(job.Request{Rows: 1}, "alice", later), "k1"); !created || j.Code == done.Code {
			t.Error("the idempotency key outlived retention")
		}
		// Expiring keys and tombstones is no error.
		if _, err := st.Sweep(t.Context(), later.Add(2*time.Hour), time.Hour); err != nil {
			t.Errorf("the sweep that expires the tombstone: %v", err)
		}
		if _, gone, _ := st.Expired(t.Context(), done.Code); gone {
			t.Error("the tombstone outlived another retention period")
		}
	}},
}

// countingWaker counts its wakes and signals each.
type countingWaker struct {
	count atomic.Int64
	woken chan struct{}
}

func newCountingWaker() *countingWaker { return &countingWaker{woken: make(chan struct{}, 100)} }

func (w *countingWaker) Wake() {
	w.count.Add(1)
	w.woken <- struct{}{}
}

func (w *countingWaker) wait(t *testing.T, when string) {
	t.Helper()
	waitClosed(t, w.woken, when)
}

func waitClosed(t *testing.T, ch <-chan struct{}, when string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatalf("watch channel not closed %s", when)
	}
}

func TestEveryStoreKeepsTheContract(t *testing.T) {
	runOnEveryStore(t, contract)
}
