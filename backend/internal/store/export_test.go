package store

import (
	"path/filepath"

	bolt "go.etcd.io/bbolt"
)

// CrashImage writes into dir the database of the bbolt store st as it has
// committed it: the data directory a process killed at this moment would
// leave (progress not yet checkpointed is not in it).
func CrashImage(st Store, dir string) error {
	return st.(*jobs).disk.(*boltDisk).db.View(func(tx *bolt.Tx) error {
		return tx.CopyFile(filepath.Join(dir, "exportstream.db"), 0o600)
	})
}

// Watchers counts the Redis store's registered waiters, for tests that
// check a watch leaves nothing behind.
func (s *Redis) Watchers() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, ws := range s.waiters {
		n += len(ws)
	}
	return n
}
