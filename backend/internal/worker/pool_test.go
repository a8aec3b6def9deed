package worker_test

import (
	"context"
	"log/slog"
	"testing"
	"testing/synctest"
	"time"

	"github.com/exportstream/exportstream/backend/internal/job"
	"github.com/exportstream/exportstream/backend/internal/store"
	"github.com/exportstream/exportstream/backend/internal/worker"
)

// watchAll records every snapshot of code until it is terminal.
func watchAll(t *testing.T, st store.Store, code string) []job.Job {
	t.Helper()
	var seen []job.Job
	for {
		j, changed, err := st.Watch(t.Context(), code)
		if err != nil {
			t.Fatal(err)
		}
		if len(seen) == 0 || seen[len(seen)-1].Seq != j.Seq {
			seen = append(seen, j)
		}
		if j.Status.Terminal() {
			return seen
		}
		<-changed
	}
}

// generate runs one job of req on a one-worker pool over st with a 100 ms
// progress interval, and returns every snapshot of it and its progress
// events.
func generate(t *testing.T, st store.Store, req job.Request) (seen, progress []job.Job) {
	t.Helper()
	pool, err := worker.New(st, worker.Config{Workers: 1, QueueSize: 1, FilesDir: t.TempDir(), ProgressInterval: 100 * time.Millisecond, Retention: time.Hour}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	j := job.New(req, "", time.Now())
	_, _, _ = st.Create(t.Context(), j, "")
	if err := pool.Submit(j.Code); err != nil {
		t.Fatal(err)
	}
	seen = watchAll(t, st, j.Code)
	for _, s := range seen {
		if s.Status == job.StatusInProgress && s.Progress > 0 {
			progress = append(progress, s)
		}
	}
	return seen, progress
}

// slowReports is a store whose third progress update takes 150 ms, longer
// than a chunk, so the next chunk's timer fires late.
type slowReports struct {
	store.Store
	updates int
}

func (s *slowReports) Update(ctx context.Context, code string, change func(*job.Job) error) (job.Job, error) {
	s.updates++
	if s.updates == 3 {
		time.Sleep(150 * time.Millisecond)
	}
	return s.Store.Update(ctx, code, change)
}

// Progress follows the schedule (timer jitter in real time must not drop
// every third event of a job in 100 ms chunks); a chunk that comes due while an event is
// still being stored is folded into the next one instead of bursting.
func TestProgressFollowsTheScheduleAndFoldsALateChunkIntoTheNext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// 2 s in 20 chunks of 100 ms, one whole percent step each: every
		// chunk but the last is a progress event, but for the one that came
		// due during the slow update.
		_, progress := generate(t, &slowReports{Store: store.NewMemory()}, job.Request{Rows: 20, DurationMs: 2000})
		if len(progress) != 18 {
			t.Errorf("%d progress events, want 18 (one per 100 ms chunk, the late one folded)", len(progress))
		}
		for i := 1; i < len(progress); i++ {
			if gap := progress[i].UpdatedAt.Sub(progress[i-1].UpdatedAt); gap < 50*time.Millisecond {
				t.Errorf("progress events %v apart, want at least half the interval", gap)
			}
		}
	})
}

func TestProgressIsThrottledToTheIntervalAndWholePercents(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// 2 s in 40 chunks of 50 ms: without the throttle, 39 progress events.
		start := time.Now()
		seen, progress := generate(t, store.NewMemory(), job.Request{Rows: 1000, DurationMs: 2000})
		if took := time.Since(start); took < 2*time.Second || took > 2100*time.Millisecond {
			t.Errorf("generation took %v of fake time, want about the requested 2s", took)
		}
		if len(progress) < 10 || len(progress) > 20 {
			t.Errorf("%d progress events, want one per 100 ms at most (and some)", len(progress))
		}
		for i := 1; i < len(progress); i++ {
			if gap := progress[i].UpdatedAt.Sub(progress[i-1].UpdatedAt); gap < 100*time.Millisecond {
				t.Errorf("progress events %v apart, want at least 100 ms", gap)
			}
			if progress[i].Progress <= progress[i-1].Progress {
				t.Errorf("progress %d after %d", progress[i].Progress, progress[i-1].Progress)
			}
		}
		if end := seen[len(seen)-1]; end.Status != job.StatusCompleted || end.Progress != 100 {
			t.Errorf("ended %s at %d%%", end.Status, end.Progress)
		}
	})
}

func TestAResumedJobContinuesFromItsCheckpointWithTheSameFile(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		newPool := func(st store.Store) *worker.Pool {
			p, err := worker.New(st, worker.Config{Workers: 1, QueueSize: 4, FilesDir: dir, ProgressInterval: 100 * time.Millisecond, Retention: time.Hour, Durable: true}, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			return p
		}
		// A fresh run gives the reference file.
		st := store.NewMemory()
		pool := newPool(st)
		ref := job.New(job.Request{Rows: 1000, DurationMs: 1000}, "", time.Now())
		_, _, _ = st.Create(t.Context(), ref, "")
		_ = pool.Submit(ref.Code)
		want := watchAll(t, st, ref.Code)
		pool.Close()

		// The same job left at a checkpoint of 40 %, as after a crash.
		st = store.NewMemory()
		resumed := ref
		resumed.Status, resumed.Progress, resumed.RowsDone, resumed.Seq = job.StatusInProgress, 40, 400, 9
		_, _, _ = st.Create(t.Context(), resumed, "")
		pool = newPool(st)
		defer pool.Close()
		start := time.Now()
		if err := pool.Resume(t.Context()); err != nil {
			t.Fatal(err)
		}
		seen := watchAll(t, st, ref.Code)
		end := seen[len(seen)-1]
		if end.Status != job.StatusCompleted || end.File.SHA256 != want[len(want)-1].File.SHA256 {
			t.Fatalf("resumed job ended %s with %+v, want COMPLETED with the reference file", end.Status, end.File)
		}
		if took := time.Since(start); took > 700*time.Millisecond {
			t.Errorf("resuming at 40%% took %v, want about the remaining 600 ms", took)
		}
		for _, s := range seen[1:] {
			if s.Progress < 40 || s.Seq <= 9 {
				t.Errorf("after resuming: progress %d seq %d went back", s.Progress, s.Seq)
			}
		}
	})
}
