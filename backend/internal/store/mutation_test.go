package store_test

// Tests added from mutation testing (make mutation, RELIABILITY.md): each
// names the surviving mutants it kills, and tests what the backend's users
// see across a restart, a second process or a full disk.

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/exportstream/exportstream/backend/internal/job"
	"github.com/exportstream/exportstream/backend/internal/store"
	"github.com/exportstream/exportstream/internal/redistest"
	"github.com/exportstream/exportstream/internal/testenv"
)

// reopen closes st and opens the durable store in dir again, as a restart.
func reopen(t *testing.T, st store.Store, dir string) store.Store {
	t.Helper()
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st = mustOpen(t, dir)
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// Kills bolt.go:167 (the key's write error check negated, which returned
// before the job was written): an export created with an Idempotency-Key
// and not yet started is there after a restart, and its key replays it.
func TestAJobCreatedWithAKeyIsThereAfterARestartBeforeItStarts(t *testing.T) {
	st, dir, j := keyedJob(t, job.Request{Rows: 10, DurationMs: 10})
	st = reopen(t, st, dir)
	if got, err := st.Get(t.Context(), j.Code); err != nil || got.Status != job.StatusPending {
		t.Fatalf("after the restart: %+v, %v; want the PENDING job", got, err)
	}
	if replay, created, err := st.Create(t.Context(), job.New(j.Request, "alice", time.Now().UTC()), "key-1"); err != nil || created || replay.Code != j.Code {
		t.Errorf("the key after the restart: %s created=%v %v; want the first job", replay.Code, created, err)
	}
}

// Kills bolt.go:226 and bolt.go:230 (the disk sweep returning before it
// deleted, or after the first deletion): idempotency keys and tombstones
// that retention dropped stay dropped after a restart.
func TestWhatRetentionDroppedStaysDroppedAfterARestart(t *testing.T) {
	dir := t.TempDir()
	st := mustOpen(t, dir)
	now := time.Now().UTC()
	var jobs []job.Job
	for _, key := range []string{"k1", "k2"} {
		j := job.New(job.Request{Rows: 1}, "alice", now)
		if _, _, err := st.Create(t.Context(), j, key); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Update(t.Context(), j.Code, func(j *job.Job) error {
			j.Status, j.File = job.StatusCompleted, &job.File{Name: "x.csv"}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		jobs = append(jobs, j)
	}
	// The first sweep deletes the jobs and leaves tombstones; the second,
	// a retention later, drops the tombstones and the keys.
	later := now.Add(2 * time.Hour)
	if deleted, err := st.Sweep(t.Context(), later, time.Hour); err != nil || len(deleted) != 2 {
		t.Fatalf("sweep: %d deleted, %v", len(deleted), err)
	}
	if _, err := st.Sweep(t.Context(), later.Add(2*time.Hour), time.Hour); err != nil {
		t.Fatal(err)
	}
	st = reopen(t, st, dir)
	for i, key := range []string{"k1", "k2"} {
		if _, gone, _ := st.Expired(t.Context(), jobs[i].Code); gone {
			t.Errorf("the tombstone of %s came back after the restart", jobs[i].Code)
		}
		j, created, err := st.Create(t.Context(), job.New(job.Request{Rows: 1}, "alice", later), key)
		if err != nil || !created || j.Code == jobs[i].Code {
			t.Errorf("key %s after the restart: created=%v %v; want a new job, the key was dropped", key, created, err)
		}
	}
}

// Kills bolt.go:62 (the 5 s lock timeout made 0, which waits forever): a
// second backend started on a data directory in use gets an error instead
// of hanging.
func TestASecondOpenOfADataDirectoryInUseFailsInsteadOfHanging(t *testing.T) {
	testenv.Slow(t)
	dir := t.TempDir()
	st := mustOpen(t, dir)
	defer func() { _ = st.Close() }()
	opened := make(chan error, 1)
	go func() {
		second, err := store.Open(dir)
		if err == nil {
			_ = second.Close()
		}
		opened <- err
	}()
	select {
	case err := <-opened:
		if err == nil {
			t.Fatal("a second store opened on a data directory in use")
		}
	case <-time.After(20 * time.Second):
		t.Fatal("opening a data directory in use still waits after 20 s")
	}
}

// fullDiskStore opens a store without a disk reserve on a 1 MiB disk and
// fills the disk; removing the file it returns makes room again. The
// store closes at the test's end, before the disk goes.
func fullDiskStore(t *testing.T) (store.Store, string) {
	t.Helper()
	dir := smallDisk(t, 1<<20)
	st := mustOpen(t, dir)
	t.Cleanup(func() { _ = st.Close() })
	filler := filepath.Join(dir, "filler")
	fillDisk(t, filler)
	return st, filler
}

// big is a request whose record takes 32 KiB: the database file must grow
// for each, and on a full disk cannot.
var big = job.Request{Rows: 1, Filename: strings.Repeat("f", 32<<10)}

// Kills commit.go:100 (failed := -1 as 1, either mutant: a commit that
// fails on its own, not by a change, answered one change short and then
// indexed past the group): without a disk reserve, creates on a full disk
// fail with ErrStorageFull, and work again once there is room.
func TestWithoutAReserveCreatesOnAFullDiskFailAsStorageFull(t *testing.T) {
	st, filler := fullDiskStore(t)
	var stored []string
	var err error
	for range 100 {
		j := job.New(big, "alice", time.Now().UTC())
		if _, _, err = st.Create(t.Context(), j, ""); err != nil {
			break
		}
		stored = append(stored, j.Code)
	}
	if !errors.Is(err, job.ErrStorageFull) {
		t.Fatalf("creates on a full disk without a reserve: %v, want ErrStorageFull", err)
	}
	if jobs, _ := st.List(t.Context(), "alice"); len(jobs) != len(stored) {
		t.Errorf("%d jobs listed, want the %d stored before the disk was full", len(jobs), len(stored))
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if _, created, err := st.Create(t.Context(), job.New(big, "alice", time.Now().UTC()), ""); err != nil || !created {
		t.Fatalf("a create once there is room: %v %v", created, err)
	}
}

// Kills disk.go:50:55 (the reserve's size check negated): a reserve left
// partial (a crash while it was written) is written back whole at start,
// so the room it stands for is really there for the next full disk.
func TestAPartialDiskReserveIsWrittenBackWholeAtStart(t *testing.T) {
	const reserve = 256 << 10
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, store.ReserveFile), make([]byte, 1000), 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(dir, store.WithDiskReserve(reserve))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = st.Close() }()
	if fi, err := os.Stat(filepath.Join(dir, store.ReserveFile)); err != nil || fi.Size() != reserve {
		t.Fatalf("reserve after start: %v %v, want %d bytes", fi, err, reserve)
	}
}

// Kills disk.go:123:21 (both mutants of free-want) and disk_linux.go:9
// (statfs's error check negated, which made every answer "cannot tell"):
// a disk without the room asked for is refused every time it is asked,
// not only the first.
func TestADiskWithoutTheRoomAskedIsRefusedEveryTime(t *testing.T) {
	dir := smallDisk(t, 2<<20)
	for i := range 3 {
		if err := store.DiskRoom(dir, 1<<30); !errors.Is(err, job.ErrStorageFull) {
			t.Fatalf("ask %d for 1 GiB on a 2 MiB disk: %v, want ErrStorageFull", i+1, err)
		}
	}
}

// Kills disk.go:123:27 (the roomy test negated, which reused a reading of
// a disk with little room): a create right after the disk filled up is
// refused, though the disk had room a moment before.
func TestACreateRightAfterTheDiskFilledIsRefused(t *testing.T) {
	dir := smallDisk(t, 2<<20)
	if err := store.DiskRoom(dir, 64<<10); err != nil {
		t.Fatalf("an empty 2 MiB disk: %v, want room for 64 KiB", err)
	}
	fillDisk(t, filepath.Join(dir, "filler"))
	if err := store.DiskRoom(dir, 64<<10); !errors.Is(err, job.ErrStorageFull) {
		t.Fatalf("right after the disk filled: %v, want ErrStorageFull", err)
	}
}

// Kills disk.go:123:60 (the reading's age test negated, which reused a
// roomy reading forever once it was old): a roomy disk remounted
// read-only is refused once the last reading is older than its 100 ms.
func TestARoomyDiskTurnedReadOnlyIsRefusedOnceTheReadingIsOld(t *testing.T) {
	dir := smallDisk(t, 4<<30) // tmpfs: room on paper, no memory taken
	synctest.Test(t, func(t *testing.T) {
		if err := store.DiskRoom(dir, 0); err != nil {
			t.Fatalf("an empty 4 GiB disk: %v", err)
		}
		if out, err := exec.Command("mount", "-o", "remount,ro", dir).CombinedOutput(); err != nil {
			t.Fatalf("remount read-only: %v %s", err, out)
		}
		time.Sleep(time.Second) // fake time: the reading is old now
		if err := store.DiskRoom(dir, 0); !errors.Is(err, job.ErrStorageReadOnly) {
			t.Fatalf("a second later, on the read-only disk: %v, want ErrStorageReadOnly", err)
		}
	})
}

// Kills redis.go:74 (both mutants of the retention default): a Redis store
// opened without a retention keeps idempotency keys for the default hour
// (a TTL of 0 would make Redis refuse every create with a key), and one
// opened with a retention lets its keys go after it.
func TestRedisKeepsIdempotencyKeysForItsRetention(t *testing.T) {
	url := redistest.Start(t).URL()
	open := func(prefix string, retention time.Duration) store.Store {
		st, err := store.OpenRedis(t.Context(), url, store.RedisOptions{Prefix: prefix, Retention: retention})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = st.Close() })
		return st
	}
	r := job.Request{Rows: 1}

	def := open("default:", 0)
	first, created, err := def.Create(t.Context(), job.New(r, "alice", time.Now().UTC()), "k")
	if err != nil || !created {
		t.Fatalf("create with a key, default retention: %v %v", created, err)
	}
	if again, created, err := def.Create(t.Context(), job.New(r, "alice", time.Now().UTC()), "k"); err != nil || created || again.Code != first.Code {
		t.Fatalf("replay, default retention: %s created=%v %v; want %s", again.Code, created, err, first.Code)
	}

	short := open("short:", 300*time.Millisecond)
	first, _, err = short.Create(t.Context(), job.New(r, "alice", time.Now().UTC()), "k")
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		again, created, err := short.Create(t.Context(), job.New(r, "alice", time.Now().UTC()), "k")
		if err != nil {
			t.Fatal(err)
		}
		if created && again.Code != first.Code {
			break // the key expired with the 300 ms retention
		}
		if time.Now().After(deadline) {
			t.Fatal("the idempotency key still replays 10 s into a 300 ms retention")
		}
		time.Sleep(50 * time.Millisecond) // polling the key's expiry, which Redis times
	}
}

// Kills store.go:161 (the failed create's key left reserved): a create
// refused for a full disk can be retried with the same Idempotency-Key
// once there is room, and makes the job.
func TestACreateRefusedForAFullDiskCanBeRetriedWithItsKey(t *testing.T) {
	st, filler := fullDiskStore(t)
	var key string
	var err error
	for i := range 100 {
		key = fmt.Sprintf("key-%d", i)
		if _, _, err = st.Create(t.Context(), job.New(big, "alice", time.Now().UTC()), key); err != nil {
			break
		}
	}
	if !errors.Is(err, job.ErrStorageFull) {
		t.Fatalf("creates on a full disk: %v, want ErrStorageFull", err)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	j := job.New(big, "alice", time.Now().UTC())
	got, created, err := st.Create(t.Context(), j, key)
	if err != nil || !created || got.Code != j.Code {
		t.Fatalf("the retry with key %s once there is room: %s created=%v %v; want the new job", key, got.Code, created, err)
	}
}
