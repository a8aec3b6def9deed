package store_test

import (
	"errors"
	"maps"
	"testing"
	"time"

	"github.com/exportstream/exportstream/backend/internal/job"
	"github.com/exportstream/exportstream/backend/internal/store"
)

func setProgress(p int) func(*job.Job) error {
	return func(j *job.Job) error { j.Status, j.Progress, j.RowsDone = job.StatusInProgress, p, p; return nil }
}

// mustOpen opens the durable store in dir; the test closes it.
func mustOpen(t *testing.T, dir string) store.Store {
	t.Helper()
	st, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// keyedJob opens the durable store in a fresh directory and creates
// alice's job of req there with Idempotency-Key key-1; the test closes
// the store.
func keyedJob(t *testing.T, req job.Request) (st store.Store, dir string, j job.Job) {
	t.Helper()
	dir = t.TempDir()
	st = mustOpen(t, dir)
	j = job.New(req, "alice", time.Now().UTC())
	if _, created, err := st.Create(t.Context(), j, "key-1"); err != nil || !created {
		t.Fatalf("create: %v %v", created, err)
	}
	return st, dir, j
}

func TestTheDurableStoreKeepsJobsKeysAndSeqAcrossReopening(t *testing.T) {
	st, dir, j := keyedJob(t, job.Request{Rows: 100, DurationMs: 10})
	if _, err := st.Update(t.Context(), j.Code, setProgress(10)); err != nil {
		t.Fatal(err)
	}
	updated, err := st.Update(t.Context(), j.Code, setProgress(20))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	st = mustOpen(t, dir)
	defer func() { _ = st.Close() }()
	got, err := st.Get(t.Context(), j.Code)
	if err != nil || got.Seq != updated.Seq || got.Progress != 20 || got.Owner != "alice" || got.Request.Rows != 100 {
		t.Fatalf("after reopening: %+v, %v; want seq %d, progress 20, owner and request kept", got, err, updated.Seq)
	}
	next, _ := st.Update(t.Context(), j.Code, setProgress(30))
	if next.Seq != updated.Seq+1 {
		t.Errorf("seq after reopening = %d, want %d: it must continue", next.Seq, updated.Seq+1)
	}
	replay, created, err := st.Create(t.Context(), job.New(j.Request, "alice", time.Now()), "key-1")
	if err != nil || created || replay.Code != j.Code {
		t.Errorf("replayed key after reopening: %s created=%v %v; want the first job", replay.Code, created, err)
	}
	if unfinished, _ := st.Unfinished(t.Context()); len(unfinished) != 1 || unfinished[0].Code != j.Code {
		t.Errorf("unfinished = %v, want the running job", unfinished)
	}
}

func TestRetentionTombstonesSurviveReopening(t *testing.T) {
	dir := t.TempDir()
	st := mustOpen(t, dir)
	j := job.New(job.Request{Rows: 1}, "", time.Now().UTC())
	_, _, _ = st.Create(t.Context(), j, "")
	_, _ = st.Update(t.Context(), j.Code, func(j *job.Job) error {
		j.Status, j.File = job.StatusCompleted, &job.File{Name: "x.csv"}
		return nil
	})
	later := time.Now().Add(2 * time.Hour)
	if deleted, err := st.Sweep(t.Context(), later, time.Hour); err != nil || len(deleted) != 1 {
		t.Fatalf("sweep: %d, %v", len(deleted), err)
	}
	_ = st.Close()
	st = mustOpen(t, dir)
	defer func() { _ = st.Close() }()
	if _, err := st.Get(t.Context(), j.Code); !errors.Is(err, job.ErrNotFound) {
		t.Errorf("swept job after reopening: %v, want not found", err)
	}
	if _, gone, _ := st.Expired(t.Context(), j.Code); !gone {
		t.Error("the tombstone did not survive reopening")
	}
	_, _ = st.Sweep(t.Context(), later.Add(2*time.Hour), time.Hour)
	if _, gone, _ := st.Expired(t.Context(), j.Code); gone {
		t.Error("the tombstone outlived another retention period")
	}
}

func TestAChangeThatFailsStoresNothing(t *testing.T) {
	st := store.NewMemory()
	j := job.New(job.Request{Rows: 1}, "", time.Now())
	_, _, _ = st.Create(t.Context(), j, "")
	boom := errors.New("no")
	if _, err := st.Update(t.Context(), j.Code, func(j *job.Job) error { j.Progress = 99; return boom }); !errors.Is(err, boom) {
		t.Fatalf("update error = %v", err)
	}
	if got, _ := st.Get(t.Context(), j.Code); got.Progress != 0 || got.Seq != 1 {
		t.Errorf("after a failed change: %+v", got)
	}
}

// TestStatsCountsMatchTheJobsAfterManyChanges: Stats is kept as jobs
// change rather than counted on each call; it must agree with the jobs
// themselves after creates, status changes, deletions and a reopening.
func TestStatsCountsMatchTheJobsAfterManyChanges(t *testing.T) {
	dir := t.TempDir()
	st := mustOpen(t, dir)
	owners := []string{"alice", "bob", ""}
	var codes []string
	for i := range 30 {
		j := job.New(job.Request{Rows: 1}, owners[i%3], time.Now().UTC())
		if _, _, err := st.Create(t.Context(), j, ""); err != nil {
			t.Fatal(err)
		}
		codes = append(codes, j.Code)
	}
	for i, code := range codes {
		switch i % 5 {
		case 0:
			_, _ = st.Update(t.Context(), code, setProgress(10))
		case 1:
			_, _ = st.Update(t.Context(), code, func(j *job.Job) error { j.Status = job.StatusCompleted; return nil })
		case 2:
			_, _ = st.Update(t.Context(), code, func(j *job.Job) error { j.Status = job.StatusFailed; return nil })
			_ = st.Delete(t.Context(), code)
		case 3:
			_ = st.Delete(t.Context(), code)
		}
	}
	check := func(when string) {
		t.Helper()
		wantStatus, wantActive := map[job.Status]int{}, map[string]int{}
		for _, o := range owners {
			list, _ := st.List(t.Context(), o)
			for _, j := range list {
				wantStatus[j.Status]++
				if !j.Status.Terminal() {
					wantActive[o]++
				}
			}
		}
		byStatus, active, err := st.Stats(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if !maps.Equal(byStatus, wantStatus) || !maps.Equal(active, wantActive) {
			t.Errorf("%s: stats %v %v, jobs say %v %v", when, byStatus, active, wantStatus, wantActive)
		}
	}
	check("after the changes")
	_ = st.Close()
	st = mustOpen(t, dir)
	defer func() { _ = st.Close() }()
	check("after reopening")
}
