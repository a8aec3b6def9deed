package store_test

// More of the Store contract, added from mutation testing (make mutation,
// RELIABILITY.md); each runs against every implementation, as
// TestEveryStoreKeepsTheContract does, and names the mutants it kills.

import (
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/exportstream/exportstream/backend/internal/job"
	"github.com/exportstream/exportstream/backend/internal/store"
)

var contractMore = []contractCase{
	// Kills store.go:126 and redis.go:668/673 (a count of 0 kept as an
	// entry): the counts forget an owner and a status with nothing left in
	// them, or they grow with every owner ever seen.
	{"stats keep no empty counts", func(t *testing.T, st store.Store) {
		j, _, err := st.Create(t.Context(), job.New(job.Request{Rows: 1}, "alice", time.Now().UTC()), "")
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range []job.Status{job.StatusInProgress, job.StatusCompleted} {
			if _, err := st.Update(t.Context(), j.Code, func(j *job.Job) error { j.Status = s; return nil }); err != nil {
				t.Fatal(err)
			}
		}
		byStatus, active, err := st.Stats(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if len(active) != 0 {
			t.Errorf("active by owner %v after alice's only job ended, want no entry", active)
		}
		if len(byStatus) != 1 || byStatus[job.StatusCompleted] != 1 {
			t.Errorf("by status %v, want only COMPLETED: 1", byStatus)
		}
	}},
	// Kills redis.go:618 (ZRange 0, -1 as 0, 1): a restarted backend
	// resumes every unfinished job, not the first two.
	{"unfinished lists every running job", func(t *testing.T, st store.Store) {
		want := createdInOrder(t, st, "alice", time.Now().UTC(), 5)
		got, err := st.Unfinished(t.Context())
		if err != nil || len(got) != len(want) {
			t.Fatalf("unfinished: %d jobs, %v; want %d", len(got), err, len(want))
		}
		for i := range want {
			if got[i].Code != want[i] {
				t.Errorf("unfinished[%d] = %s, want %s (oldest first)", i, got[i].Code, want[i])
			}
		}
	}},
	// Runs compareStrings (store.go:256), which no test reached, and kills
	// the mutants of its return -1 (store.go:259): jobs created in the same instant (a burst of creates) are
	// listed in one order, the same on every call and every store, so a
	// page reload never reshuffles them. Both stores break the tie by code,
	// descending; the test asserts that order, since "stable" alone would
	// let a comparator that calls some codes equal pass by chance.
	{"jobs created in the same instant are listed in a stable order", func(t *testing.T, st store.Store) {
		at := time.Now().UTC().Truncate(time.Millisecond) // Redis scores are milliseconds
		var codes []string
		for range 5 {
			j := job.New(job.Request{Rows: 1}, "alice", at)
			if _, _, err := st.Create(t.Context(), j, ""); err != nil {
				t.Fatal(err)
			}
			codes = append(codes, j.Code)
		}
		slices.Sort(codes)
		slices.Reverse(codes)
		for range 3 {
			got, err := st.List(t.Context(), "alice")
			if err != nil || len(got) != len(codes) {
				t.Fatalf("list: %d jobs, %v", len(got), err)
			}
			for i := range codes {
				if got[i].Code != codes[i] {
					t.Fatalf("list[%d] = %s, want %s: ties ordered by code, descending", i, got[i].Code, codes[i])
				}
			}
		}
	}},
	// Kills redis.go:194 (a change notified during a watcher's read not
	// closing its channel) and redis.go:197/198 (a settling watcher
	// dropping the other watchers of the job), which the races of many
	// watchers on a busy job reach: every watcher follows the job to its
	// last change, none waits for a change that already happened.
	{"every watcher of a busy job follows it to its last change", func(t *testing.T, st store.Store) {
		j := job.New(job.Request{Rows: 1000}, "alice", time.Now().UTC())
		if _, _, err := st.Create(t.Context(), j, ""); err != nil {
			t.Fatal(err)
		}
		const updates, watchers = 300, 16
		final := int64(1 + updates)
		var wg sync.WaitGroup
		for range watchers {
			wg.Go(func() {
				for {
					snap, changed, err := st.Watch(t.Context(), j.Code)
					if err != nil {
						t.Error(err)
						return
					}
					if snap.Seq == final {
						return
					}
					select {
					case <-changed:
					case <-time.After(5 * time.Second):
						t.Errorf("a watcher at seq %d was not woken for 5 s while the job went on to seq %d", snap.Seq, final)
						return
					}
				}
			})
		}
		for i := range updates {
			if _, err := st.Update(t.Context(), j.Code, func(j *job.Job) error { j.RowsDone = i + 1; return nil }); err != nil {
				t.Fatal(err)
			}
		}
		wg.Wait()
	}},
	// Kills redis.go:535 (the delete's error check negated, which took a
	// lost compare-and-set for a deletion): a delete that races a running
	// job's updates still deletes it.
	{"a delete racing updates deletes the job", func(t *testing.T, st store.Store) {
		for range 20 {
			j := job.New(job.Request{Rows: 1000}, "alice", time.Now().UTC())
			if _, _, err := st.Create(t.Context(), j, ""); err != nil {
				t.Fatal(err)
			}
			stop := make(chan struct{})
			var wg sync.WaitGroup
			wg.Go(func() {
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					if _, err := st.Update(t.Context(), j.Code, func(j *job.Job) error { j.RowsDone = i; return nil }); errors.Is(err, job.ErrNotFound) {
						return
					}
				}
			})
			err := st.Delete(t.Context(), j.Code)
			close(stop)
			wg.Wait()
			if err != nil {
				t.Fatalf("delete: %v", err)
			}
			if got, err := st.Get(t.Context(), j.Code); !errors.Is(err, job.ErrNotFound) {
				t.Fatalf("after a delete that returned nil: %+v, %v; want not found", got, err)
			}
		}
	}},
}

func TestEveryStoreKeepsTheContractToo(t *testing.T) {
	runOnEveryStore(t, contractMore)
}
