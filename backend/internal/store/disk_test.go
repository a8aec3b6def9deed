package store_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/exportstream/exportstream/backend/internal/job"
	"github.com/exportstream/exportstream/backend/internal/store"
	"github.com/exportstream/exportstream/internal/testenv"
)

// smallDisk mounts a tmpfs of size bytes for the test (root only; skips
// loudly elsewhere, fails under CI=true).
func smallDisk(t *testing.T, size int) string {
	t.Helper()
	dir := t.TempDir()
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d,mode=0700", size), "tmpfs", dir).CombinedOutput()
	if err != nil {
		testenv.Missing(t, "a tmpfs mount (needs root or CAP_SYS_ADMIN): %v %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount: %v %s", err, out)
			_ = exec.Command("umount", "-l", dir).Run()
		}
	})
	return dir
}

func fillDisk(t *testing.T, path string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	chunk := make([]byte, 4096)
	for range 64 << 20 / len(chunk) {
		if _, err = f.Write(chunk); err != nil {
			break
		}
	}
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("fill: %v, want ENOSPC", err)
	}
}

// TestOnAFullDiskTheReserveLetsChangesLandAndCreatesWaitForRoom fills
// the disk under the bbolt store: changes of existing jobs still land
// (the reserve is given up for them), creates get job.ErrStorageFull,
// and once there is room again the reserve is written back and creates
// work.
func TestOnAFullDiskTheReserveLetsChangesLandAndCreatesWaitForRoom(t *testing.T) {
	// One round of 300 concurrent changes can take more than 256 KiB of new
	// pages (bbolt copies on write; how the group commit groups them varies), so a
	// smaller reserve made this test fail by chance.
	const reserve = 512 << 10
	dir := smallDisk(t, 2<<20)
	st, err := store.Open(dir, store.WithDiskReserve(reserve))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = st.Close() }()
	codes := make([]string, 300)
	created := make([]error, len(codes))
	var wg sync.WaitGroup
	for i := range codes {
		j := job.New(job.Request{Rows: 100, DurationMs: 10, Filename: fmt.Sprintf("report-%03d-%0100d", i, i)}, "alice", time.Now().UTC())
		codes[i] = j.Code
		wg.Go(func() { _, _, created[i] = st.Create(t.Context(), j, "") })
	}
	wg.Wait()
	if err := errors.Join(created...); err != nil {
		t.Fatal(err)
	}
	filler := filepath.Join(dir, "filler")
	fillDisk(t, filler)

	// Every job changes at once (one bbolt batch), several times: more
	// new pages than the database has free.
	for round := range 5 {
		errs := make([]error, len(codes))
		for i, code := range codes {
			wg.Go(func() { _, errs[i] = st.Update(t.Context(), code, setProgress(10*(round+1))) })
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatalf("round %d: a change on a full disk was lost: %v", round, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, store.ReserveFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the reserve is still there (%v): the changes did not need it, the test proves less than it says", err)
	}
	j := job.New(job.Request{Rows: 1, DurationMs: 1}, "alice", time.Now().UTC())
	if _, _, err := st.Create(t.Context(), j, ""); !errors.Is(err, job.ErrStorageFull) {
		t.Fatalf("create on a full disk: %v, want ErrStorageFull", err)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.Create(t.Context(), j, ""); err != nil {
		t.Fatalf("create after room returned: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(dir, store.ReserveFile)); err != nil || fi.Size() != reserve {
		t.Errorf("reserve after room returned: %v %v, want %d bytes", fi, err, reserve)
	}
	got, err := st.Get(t.Context(), codes[0])
	if err != nil || got.Progress != 50 {
		t.Errorf("job after the full disk: %+v %v, want progress 50", got, err)
	}
}

func TestStorageErrorNamesAFullOrReadOnlyDisk(t *testing.T) {
	for errno, want := range map[syscall.Errno]error{
		syscall.ENOSPC: job.ErrStorageFull, syscall.EDQUOT: job.ErrStorageFull, syscall.EFBIG: job.ErrStorageFull,
		syscall.EROFS: job.ErrStorageReadOnly,
	} {
		err := store.StorageError(&os.PathError{Op: "write", Path: "x", Err: errno})
		if !errors.Is(err, want) || !errors.Is(err, errno) {
			t.Errorf("%v: %v, want %v wrapping it", errno, err, want)
		}
	}
	if other := errors.New("other"); store.StorageError(other) != other { //nolint:errorlint // the very same error, unwrapped
		t.Error("an unrelated error was changed")
	}
}
