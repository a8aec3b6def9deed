package worker_test

import (
	"log/slog"
	"testing"
	"testing/synctest"
	"time"

	"github.com/exportstream/exportstream/backend/internal/job"
	"github.com/exportstream/exportstream/backend/internal/store"
	"github.com/exportstream/exportstream/backend/internal/worker"
)

// A non-durable pool's shutdown fails every job it had not finished, the
// one running and those queued, so no watcher waits for an end that never
// comes. Found by mutation testing (TestTheLogStaysQuietWhenNothingWentWrong): a worker woken by the shutdown could take
// a queued job off the in-process queue and drop it (its Release did
// nothing), leaving it PENDING. Rounds, since which job the worker takes
// is up to a select.
func TestAShutdownFailsEveryUnfinishedJobOfANonDurablePool(t *testing.T) {
	for round := range 100 {
		synctest.Test(t, func(t *testing.T) {
			st := store.NewMemory()
			codes := shutDownRunningAndQueued(t, st, slog.New(slog.DiscardHandler))
			for i, code := range codes {
				if j, _ := st.Get(t.Context(), code); j.Status != job.StatusFailed || j.Error == nil || j.Error.Code != "INTERRUPTED" {
					t.Errorf("round %d: after the shutdown the %s job is %s %+v, want FAILED INTERRUPTED", round, []string{"running", "queued"}[i], j.Status, j.Error)
				}
			}
		})
	}
}

// shutDownRunningAndQueued submits two 10 s exports to a non-durable,
// one-worker pool over st, lets the first run a second (of fake time: call
// it in a synctest bubble), closes the pool and returns their codes,
// running one first.
func shutDownRunningAndQueued(t *testing.T, st store.Store, log *slog.Logger) []string {
	t.Helper()
	pool, err := worker.New(st, worker.Config{Workers: 1, QueueSize: 2, FilesDir: t.TempDir(), ProgressInterval: 100 * time.Millisecond, Retention: time.Hour}, log)
	if err != nil {
		t.Fatal(err)
	}
	var codes []string
	for range 2 { // one running, one queued
		j := job.New(job.Request{Rows: 1000, DurationMs: 10_000}, "", time.Now())
		_, _, _ = st.Create(t.Context(), j, "")
		if err := pool.Submit(j.Code); err != nil {
			t.Fatal(err)
		}
		codes = append(codes, j.Code)
	}
	time.Sleep(time.Second) // fake time: the first one is running
	pool.Close()
	return codes
}
