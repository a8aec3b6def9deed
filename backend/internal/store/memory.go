// Package store keeps jobs and tells watchers when one changes.
//
// Memory is the store of the foundation slice: jobs live in the process. The
// Store interface is what the durable embedded store and the Redis store of
// later work implement, so the worker and the HTTP layer do not change.
package store

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/exportstream/exportstream/backend/internal/job"
)

// Store keeps jobs. Update is the only way a job changes: it bumps Seq and
// UpdatedAt and wakes the job's watchers.
type Store interface {
	Create(ctx context.Context, j job.Job) error
	Get(ctx context.Context, code string) (job.Job, error)
	Update(ctx context.Context, code string, change func(*job.Job) error) (job.Job, error)
	// Watch returns the current snapshot and a channel that is closed at the
	// job's next change. Watchers re-read after it closes, so a slow watcher
	// skips intermediate snapshots but never the last one.
	Watch(ctx context.Context, code string) (job.Job, <-chan struct{}, error)
}

// Memory is a Store in the process's memory.
type Memory struct {
	mu   sync.Mutex
	jobs map[string]*entry
	now  func() time.Time
}

type entry struct {
	job     job.Job
	changed chan struct{}
}

// NewMemory returns an empty in-memory store.
func NewMemory() *Memory {
	return &Memory{jobs: make(map[string]*entry), now: time.Now}
}

// Create adds j; its code must be new.
func (m *Memory) Create(_ context.Context, j job.Job) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.jobs[j.Code]; ok {
		return fmt.Errorf("create %s: code already exists", j.Code)
	}
	m.jobs[j.Code] = &entry{job: j, changed: make(chan struct{})}
	return nil
}

// Get returns the job's snapshot or job.ErrNotFound.
func (m *Memory) Get(_ context.Context, code string) (job.Job, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.jobs[code]
	if !ok {
		return job.Job{}, job.ErrNotFound
	}
	return e.job, nil
}

// Update applies change to a copy of the job and stores it with the next
// Seq. If change returns an error nothing is stored.
func (m *Memory) Update(_ context.Context, code string, change func(*job.Job) error) (job.Job, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.jobs[code]
	if !ok {
		return job.Job{}, job.ErrNotFound
	}
	next := e.job
	if err := change(&next); err != nil {
		return e.job, err
	}
	next.Seq = e.job.Seq + 1
	next.UpdatedAt = m.now().UTC()
	e.job = next
	close(e.changed)
	e.changed = make(chan struct{})
	return next, nil
}

// Watch implements Store.
func (m *Memory) Watch(_ context.Context, code string) (job.Job, <-chan struct{}, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.jobs[code]
	if !ok {
		return job.Job{}, nil, job.ErrNotFound
	}
	return e.job, e.changed, nil
}
