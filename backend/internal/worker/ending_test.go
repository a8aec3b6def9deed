package worker_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/exportstream/exportstream/backend/internal/job"
	"github.com/exportstream/exportstream/backend/internal/store"
	"github.com/exportstream/exportstream/backend/internal/worker"
)

// scriptedStore is the real in-memory store with hooks on Update and Get,
// to put a store failure or a rival's change exactly where a test wants it.
type scriptedStore struct {
	store.Store
	mu sync.Mutex
	// beforeUpdate runs before each Update with what the change would
	// store; a non-nil error is returned instead of updating.
	beforeUpdate func(n int, would job.Job) error
	updates      int
	// getErr, if set, fails every Get.
	getErr error
}

func (s *scriptedStore) Update(ctx context.Context, code string, change func(*job.Job) error) (job.Job, error) {
	if s.beforeUpdate != nil {
		cur, err := s.Store.Get(ctx, code)
		if err == nil && change(&cur) == nil {
			s.mu.Lock()
			s.updates++
			n := s.updates
			s.mu.Unlock()
			if err := s.beforeUpdate(n, cur); err != nil {
				return job.Job{}, err
			}
		}
	}
	return s.Store.Update(ctx, code, change)
}

func (s *scriptedStore) Get(ctx context.Context, code string) (job.Job, error) {
	s.mu.Lock()
	err := s.getErr
	s.mu.Unlock()
	if err != nil {
		return job.Job{}, err
	}
	return s.Store.Get(ctx, code)
}

// landingBeforeCompleted is an in-memory store on which a rival's change
// lands right before the worker's COMPLETED would: rival changes the job
// as stored, given what the worker's update would store.
func landingBeforeCompleted(rival func(j *job.Job, would job.Job)) *scriptedStore {
	inner := store.NewMemory()
	st := &scriptedStore{Store: inner}
	st.beforeUpdate = func(_ int, would job.Job) error {
		if would.Status != job.StatusCompleted {
			return nil
		}
		_, err := inner.Update(context.Background(), would.Code, func(j *job.Job) error {
			rival(j, would)
			return nil
		})
		return err
	}
	return st
}

// runOne generates one small job on a one-worker pool over st until it is
// terminal (or fails the test after 10 s), closes the pool so the worker
// is done with the file, and returns the last snapshot and the file path.
func runOne(t *testing.T, st store.Store) (job.Job, string) {
	t.Helper()
	pool, err := worker.New(st, worker.Config{Workers: 1, QueueSize: 1, FilesDir: t.TempDir(), ProgressInterval: 20 * time.Millisecond, Retention: time.Hour}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	j := job.New(job.Request{Rows: 500, DurationMs: 100}, "", time.Now())
	if _, _, err := st.Create(t.Context(), j, ""); err != nil {
		t.Fatal(err)
	}
	if err := pool.Submit(j.Code); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for {
		cur, changed, err := st.Watch(ctx, j.Code)
		if err != nil {
			t.Fatal(err)
		}
		if cur.Status.Terminal() {
			pool.Close()
			return cur, pool.FilePath(j.Code)
		}
		select {
		case <-changed:
		case <-ctx.Done():
			pool.Close()
			t.Fatalf("the job is still %s after 10 s", cur.Status)
		}
	}
}

func TestACompletedJobKeepsItsFileWhenTheStoreCannotBeReadRightAfter(t *testing.T) {
	st := &scriptedStore{Store: store.NewMemory()}
	st.beforeUpdate = func(_ int, would job.Job) error {
		if would.Status == job.StatusCompleted { // a Redis blip right after this lands
			st.mu.Lock()
			st.getErr = store.RedisError("get", errors.New("connection reset by peer"))
			st.mu.Unlock()
		}
		return nil
	}
	end, path := runOne(t, st)
	if end.Status != job.StatusCompleted {
		t.Fatalf("ended %s %+v", end.Status, end.Error)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("the COMPLETED job's file is gone: %v", err)
	}
	if got := fileSHA256(t, path); got != end.File.SHA256 {
		t.Errorf("file sha256 %s, the job says %s", got, end.File.SHA256)
	}
}

func TestAJobCompletedByAnotherWorkerKeepsTheFileBothStored(t *testing.T) {
	// The other worker is first, with the same file.
	end, path := runOne(t, landingBeforeCompleted(func(j *job.Job, would job.Job) {
		j.Status, j.Progress, j.RowsDone, j.File = would.Status, would.Progress, would.RowsDone, would.File
	}))
	if end.Status != job.StatusCompleted {
		t.Fatalf("ended %s", end.Status)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("the file was removed though the job is COMPLETED: %v", err)
	}
}

func TestAJobCancelledWhileItsFileIsStoredLeavesNoFile(t *testing.T) {
	// The user's cancel lands first.
	end, path := runOne(t, landingBeforeCompleted(func(j *job.Job, _ job.Job) { j.Status = job.StatusCancelled }))
	if end.Status != job.StatusCancelled {
		t.Fatalf("ended %s", end.Status)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a cancelled job left its file behind (stat: %v)", err)
	}
}

func TestAJobWhoseFirstUpdateFailsForGoodEndsFailedInsteadOfStayingPending(t *testing.T) {
	st := &scriptedStore{Store: store.NewMemory()}
	st.beforeUpdate = func(n int, _ job.Job) error {
		if n == 1 {
			return errors.New("decode job: unexpected end of JSON input") // not a storage error: retrying cannot help
		}
		return nil
	}
	end, _ := runOne(t, st)
	if end.Status != job.StatusFailed || end.Error == nil || end.Error.Code != "GENERATION_FAILED" {
		t.Errorf("ended %s %+v; want FAILED with GENERATION_FAILED", end.Status, end.Error)
	}
}

func fileSHA256(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
