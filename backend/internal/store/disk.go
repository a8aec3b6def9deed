package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/exportstream/exportstream/backend/internal/job"
)

// StorageError maps a full or read-only disk under err to the domain
// errors job.ErrStorageFull and job.ErrStorageReadOnly (keeping err in
// the chain); any other error is returned as is.
func StorageError(err error) error {
	switch {
	case err == nil, errors.Is(err, job.ErrStorageFull), errors.Is(err, job.ErrStorageReadOnly):
		return err
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT), errors.Is(err, syscall.EFBIG):
		return fmt.Errorf("%w: %w", job.ErrStorageFull, err)
	case errors.Is(err, syscall.EROFS):
		return fmt.Errorf("%w: %w", job.ErrStorageReadOnly, err)
	}
	return err
}

// reserve is a file of real bytes kept in the data directory and given
// up when the disk fills (the "ballast" of CockroachDB): deleting it makes
// room to record that running jobs failed, so none stays IN_PROGRESS for
// want of a few KiB. Creates are refused (job.ErrStorageFull) until it
// can be written back, that is until there is room again.
type reserve struct {
	path string
	dir  string
	size int64

	mu   sync.Mutex
	held bool
}

func newReserve(path string, size int64) *reserve {
	r := &reserve{path: path, dir: filepath.Dir(path), size: size}
	if size <= 0 {
		r.held = true // none configured: nothing to give up or restore
		return r
	}
	if st, err := os.Stat(path); err == nil && st.Size() == size {
		r.held = true
	}
	return r
}

// roomForNew says whether a new job may start: job.ErrStorageFull (or
// ErrStorageReadOnly) unless the reserve is in place, written back if it
// was given up, and as much again is free besides it.
func (r *reserve) roomForNew() error {
	if r.size <= 0 {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.held {
		if err := writeReserve(r.path, r.size); err != nil {
			_ = os.Remove(r.path) // a partial reserve would only take room
			return StorageError(fmt.Errorf("restore the disk reserve: %w", err))
		}
		r.held = true
	}
	return DiskRoom(r.dir, r.size)
}

// DiskRoom says whether dir's disk can take a new export: job.ErrStorageReadOnly
// when it is mounted read-only, job.ErrStorageFull when less than want
// bytes are free; nil where it cannot tell (not Linux).
//
// Every create asks (twice: the files and the store), so a disk found
// writable with more than roomyDisk bytes to spare is not asked again for
// roomyFor: a statfs(2) per ask costs 4 % of the backend's CPU at 10,000
// creates/s. Near full, or read-only, it is asked every time. This is an
// early refusal, not the guarantee: a write that meets a full disk still
// fails as job.ErrStorageFull, and the reserve is still there for it.
func DiskRoom(dir string, want int64) error {
	if roomyRecently(dir, want) {
		return nil
	}
	free, readOnly, ok := diskState(dir)
	if ok && !readOnly {
		noteRoom(dir, free)
	}
	switch {
	case !ok:
		return nil
	case readOnly:
		return fmt.Errorf("%w: %s is mounted read-only", job.ErrStorageReadOnly, dir)
	case free < want:
		return fmt.Errorf("%w: %d bytes free in %s, %d wanted", job.ErrStorageFull, free, dir, want)
	}
	return nil
}

const (
	roomyDisk = 1 << 30 // bytes beyond the wanted room for a reading to be reused
	roomyFor  = 100 * time.Millisecond
)

type roomReading struct {
	at   time.Time
	free int64
}

var (
	roomMu   sync.Mutex
	roomSeen = map[string]roomReading{}
)

func roomyRecently(dir string, want int64) bool {
	roomMu.Lock()
	r, ok := roomSeen[dir]
	roomMu.Unlock()
	return ok && r.free-want >= roomyDisk && time.Since(r.at) < roomyFor
}

func noteRoom(dir string, free int64) {
	roomMu.Lock()
	roomSeen[dir] = roomReading{at: time.Now(), free: free}
	roomMu.Unlock()
}

// release deletes the reserve, if it is there. It reports whether there
// is one configured: then a write that found the disk full may try again,
// into the room this or a concurrent release made.
func (r *reserve) release() bool {
	if r.size <= 0 {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.held {
		r.held = false
		_ = os.Remove(r.path)
	}
	return true
}

// writeReserve writes size bytes of zeros (written, not a sparse hole, so
// the blocks are really taken) and syncs them.
func writeReserve(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	zeros := make([]byte, 64<<10)
	for left := size; left > 0; {
		n, err := f.Write(zeros[:min(left, int64(len(zeros)))])
		if err != nil {
			_ = f.Close()
			return err
		}
		left -= int64(n)
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}
