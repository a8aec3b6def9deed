package store

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
