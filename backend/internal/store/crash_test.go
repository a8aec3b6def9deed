package store_test

import (
	"log/slog"
	"testing"
	"time"

	"github.com/exportstream/exportstream/backend/internal/job"
	"github.com/exportstream/exportstream/backend/internal/store"
	"github.com/exportstream/exportstream/backend/internal/worker"
	"github.com/exportstream/exportstream/internal/exportfile"
)

// TestAnExportResumedAfterACrashGoesOnAboveEverySeqSeenAndEndsWithTheWholeFile:
// the worker relies on nothing a progress tick carries. A generation on
// the embedded store is "killed" at the moment its watcher sees 50 %
// (the crash image holds only what was committed: the last checkpoint,
// not the ticks since); resumed from that image, the export goes on from
// its last checkpoint with seqs above every one seen, ends COMPLETED once,
// and its file is the whole file.
func TestAnExportResumedAfterACrashGoesOnAboveEverySeqSeenAndEndsWithTheWholeFile(t *testing.T) {
	const rows = 20_000
	files := t.TempDir()
	newPool := func(st store.Store) *worker.Pool {
		p, err := worker.New(st, worker.Config{Workers: 1, QueueSize: 4, FilesDir: files, ProgressInterval: 10 * time.Millisecond, Retention: time.Hour, Durable: true}, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	st, err := store.Open(t.TempDir()) // the default checkpoint interval
	if err != nil {
		t.Fatal(err)
	}
	pool := newPool(st)
	j := job.New(job.Request{Rows: rows, DurationMs: 1500}, "alice", time.Now().UTC())
	if _, _, err := st.Create(t.Context(), j, ""); err != nil {
		t.Fatal(err)
	}
	if err := pool.Submit(j.Code); err != nil {
		t.Fatal(err)
	}
	image := t.TempDir()
	var seen job.Job
	for {
		snap, changed, err := st.Watch(t.Context(), j.Code)
		if err != nil {
			t.Fatal(err)
		}
		if snap.Status.Terminal() {
			t.Fatalf("the export ended %s before the crash", snap.Status)
		}
		seen = snap
		if snap.Progress >= 50 {
			if err := store.CrashImage(st, image); err != nil {
				t.Fatal(err)
			}
			break
		}
		<-changed
	}
	pool.Close() // the dead process's generation stops; its store goes too
	_ = st.Close()

	st, err = store.Open(image)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = st.Close() }()
	loaded, err := st.Get(t.Context(), j.Code)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("seen before the crash: seq %d, %d%%; after it: seq %d, %d%% (the last checkpoint)", seen.Seq, seen.Progress, loaded.Seq, loaded.Progress)
	if loaded.Status != job.StatusInProgress || loaded.Seq <= seen.Seq {
		t.Fatalf("after the crash: %s at seq %d; want IN_PROGRESS above seq %d", loaded.Status, loaded.Seq, seen.Seq)
	}
	pool = newPool(st)
	defer pool.Close()
	if err := pool.Resume(t.Context()); err != nil {
		t.Fatal(err)
	}
	prev, terminals := seen.Seq, 0
	var end job.Job
	for end.Status == "" || !end.Status.Terminal() {
		snap, changed, err := st.Watch(t.Context(), j.Code)
		if err != nil {
			t.Fatal(err)
		}
		if snap.Seq != prev {
			if snap.Seq < prev {
				t.Fatalf("seq %d after %d", snap.Seq, prev)
			}
			if snap.Status.Terminal() {
				terminals++
			}
			prev, end = snap.Seq, snap
		}
		if !snap.Status.Terminal() {
			<-changed
		}
	}
	if want := exportfile.SHA256(j.Code, rows); terminals != 1 || end.Status != job.StatusCompleted || end.File.SHA256 != want {
		t.Fatalf("after resuming: %d terminal snapshots, the last %s with file %+v; want one COMPLETED with sha256 %s", terminals, end.Status, end.File, want)
	}
}
