// Package store keeps jobs, their idempotency keys and the tombstones of
// expired files, and tells watchers when a job changes.
//
// One implementation serves two modes: durable (Open: an embedded bbolt
// database in the data directory) and in-memory (NewMemory: for tests and
// throwaway demos). All jobs are also held in memory, which serves reads
// and watches. The Redis store (redis.go) keeps the same contract for
// several replicas.
//
// # What the durable store writes before anyone sees it
//
// A change that matters after a crash is durable before visible: a create,
// every status change (PENDING → IN_PROGRESS and every terminal one), a
// deletion, and any change that touches more than progress and rowsDone.
// Update returns, and watchers are woken, only once it is committed and
// fsynced, so a client never sees a state that a crash could take back.
//
// A progress tick (IN_PROGRESS → IN_PROGRESS, changing only progress and
// rowsDone) is published at once and written later: every
// WithProgressCheckpoint interval (DefaultProgressCheckpoint) the latest
// snapshot of each job with unwritten progress goes to disk in one group
// commit, Close writes what is left, and a durable change of the job
// writes its latest state anyway. So with many jobs running, a tick does
// not wait for an fsync. Nothing a restart relies on for correctness is
// in a tick: a restarted backend resumes the unfinished jobs (their status
// is durable) and the generator rewrites the file from its first row (rows
// are deterministic), reading rowsDone only to pace the rest. A crash may
// lose the ticks of the last interval: the resumed job goes on from its
// last checkpoint, and its progress may step back, with a higher seq.
//
// Seqs stay strictly increasing across a crash (a hi/lo reservation): each
// write of an IN_PROGRESS job, a durable change or a checkpoint, stores a
// seq ceiling, its seq + seqBlock (64). A tick is published before it is
// written only while its seq is at most the ceiling known to be on disk
// (raised in memory once the write that carries it has committed); the
// tick that would pass it is written first, with a new ceiling. So a tick
// waits for the disk, for one commit, only when its job ticked seqBlock
// times since its last write: at most one tick in seqBlock, and none for
// a job ticking fewer than seqBlock times per checkpoint interval (the
// generator's ten a second are far below). On load, an unfinished job
// whose ceiling is above its stored seq is given seq ceiling+1: above
// every seq that can have been published, and equal to none of them, so
// no seq ever names two different snapshots. Close lowers each running
// job's ceiling to its seq once everything is written (nothing above it
// was published), so a clean restart continues the seqs without a jump.
// A checkpoint never overwrites a newer stored state or a deleted job: it
// compares with the stored seq inside its transaction.
package store

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/exportstream/exportstream/backend/internal/job"
)

// Store is what the worker and the HTTP layer need; a Redis store will
// implement the same.
type Store interface {
	// Create stores j. With a non-empty idempotency key, a key already used
	// by owner with the same request returns that job and created=false; with
	// a different request, job.ErrKeyReused.
	Create(ctx context.Context, j job.Job, key string) (stored job.Job, created bool, err error)
	Get(ctx context.Context, code string) (job.Job, error)
	// Update applies change to a copy of the job and stores it with the next
	// Seq. If change returns an error nothing is stored.
	Update(ctx context.Context, code string, change func(*job.Job) error) (job.Job, error)
	// Watch returns the current snapshot and a channel closed at the job's
	// next change (or deletion). Watchers re-read after it closes, so a slow
	// watcher skips intermediate snapshots but never the last one.
	Watch(ctx context.Context, code string) (job.Job, <-chan struct{}, error)
	// WatchNotify is Watch for a watcher without a goroutine of its own:
	// it returns the current snapshot and calls w.Wake once at the job's
	// next change (or deletion), unless Unwatch(code, w) comes first. On
	// an error nothing is registered.
	WatchNotify(ctx context.Context, code string, w Waker) (job.Job, error)
	// Unwatch cancels w's WatchNotify of code, if it has not woken yet.
	Unwatch(code string, w Waker)
	// List returns owner's jobs, newest first.
	List(ctx context.Context, owner string) ([]job.Job, error)
	// Delete removes a job. Its idempotency key stays until it expires
	// with retention: a create replaying it gets job.ErrKeyOfDeletedExport,
	// so a late retry of a create never starts a deleted export again.
	Delete(ctx context.Context, code string) error
	// Expired reports whether code's file was deleted by retention, and its owner.
	Expired(ctx context.Context, code string) (owner string, ok bool, err error)
	// Sweep applies retention at now: it deletes terminal jobs last changed
	// more than retention ago (leaving a tombstone dated now for those with
	// a file), and keys and tombstones older than retention. It returns the
	// deleted jobs so their files can go too.
	Sweep(ctx context.Context, now time.Time, retention time.Duration) ([]job.Job, error)
	// Unfinished returns the jobs that are not terminal, oldest first, so a
	// restarted backend can resume them.
	Unfinished(ctx context.Context) ([]job.Job, error)
	// Stats counts jobs by status and owner's jobs that are not terminal.
	// An error means the counts are unknown: callers that enforce a limit
	// with them refuse rather than let everything through.
	Stats(ctx context.Context) (byStatus map[job.Status]int, activeByOwner map[string]int, err error)
	Close() error
}

// Waker is what WatchNotify wakes. Wake runs with the store's locks held:
// it must return at once and not call the store.
type Waker interface {
	Wake()
}

// persister writes changes durably; nil in memory mode.
type persister interface {
	// putJob writes j with the seq ceiling of its entry (see the package doc).
	putJob(j job.Job, key string, ceiling int64) error
	// putCheckpoints writes the snapshots in one commit, skipping any job
	// deleted or stored at a higher seq meanwhile.
	putCheckpoints(cps []checkpoint) error
	createJob(j job.Job, key string, k idemKey) error
	deleteJob(code string, tomb *tombstone) error
	sweep(cutoff time.Time) error
	close() error
}

type entry struct {
	mu      sync.Mutex // serialises changes of this job
	job     job.Job
	key     string // the idempotency key it was created with, if any
	changed chan struct{}
	wakers  []Waker // WatchNotify's, woken with changed
	// ceiling is the highest seq the disk has reserved for this job: a
	// progress tick up to it may be seen before it is written (durable
	// store only; see the package doc).
	ceiling int64
	// dirty: job holds progress not yet written; the entry is then in the
	// checkpointer's set, or in the batch it is writing.
	dirty bool
}

type idemKey struct {
	Code        string    `json:"code"`
	Fingerprint string    `json:"fingerprint"`
	CreatedAt   time.Time `json:"createdAt"`
}

type tombstone struct {
	Owner string    `json:"owner"`
	At    time.Time `json:"at"`
}

// jobs is the Store; see the package doc.
type jobs struct {
	disk     persister
	progress *checkpointer // nil: every change is durable before visible
	now      func() time.Time

	mu      sync.Mutex
	entries map[string]*entry
	keys    map[string]idemKey // keyID(owner, key) → key
	gone    map[string]tombstone
	// Counts kept as jobs are created, change status and go, so Stats
	// (read by every create under a per-owner cap, and by /metrics) does
	// not walk every job: it did, and that grew with retention.
	byStatus map[job.Status]int
	active   map[string]int // owner → jobs not terminal
}

// NewMemory returns a store that keeps everything in memory.
func NewMemory() Store { return newJobs(nil) }

func newJobs(disk persister) *jobs {
	return &jobs{
		disk: disk, now: time.Now,
		entries: make(map[string]*entry), keys: make(map[string]idemKey), gone: make(map[string]tombstone),
		byStatus: make(map[job.Status]int), active: make(map[string]int),
	}
}

// count adds d (1 or -1) to the counts of j's status and, unless it is
// terminal, to its owner's unfinished jobs. s.mu is held.
func (s *jobs) count(j *job.Job, d int) {
	if n := s.byStatus[j.Status] + d; n > 0 {
		s.byStatus[j.Status] = n
	} else {
		delete(s.byStatus, j.Status)
	}
	if j.Status.Terminal() {
		return
	}
	if n := s.active[j.Owner] + d; n > 0 {
		s.active[j.Owner] = n
	} else {
		delete(s.active, j.Owner)
	}
}

func keyID(owner, key string) string { return owner + "\x00" + key }

// replay is a create's answer for an idempotency key already used with
// the same request: the job it made, or job.ErrKeyOfDeletedExport if that
// job was deleted since (the key outlives it, so a late retry of the
// create cannot start the deleted export again).
func replay(stored job.Job, err error) (job.Job, bool, error) {
	if errors.Is(err, job.ErrNotFound) {
		return job.Job{}, false, job.ErrKeyOfDeletedExport
	}
	return stored, false, err
}

func (s *jobs) Create(ctx context.Context, j job.Job, key string) (job.Job, bool, error) {
	s.mu.Lock()
	var k idemKey
	if key != "" {
		if prev, ok := s.keys[keyID(j.Owner, key)]; ok {
			s.mu.Unlock()
			if prev.Fingerprint != j.Request.Fingerprint() {
				return job.Job{}, false, job.ErrKeyReused
			}
			return replay(s.Get(ctx, prev.Code))
		}
		k = idemKey{Code: j.Code, Fingerprint: j.Request.Fingerprint(), CreatedAt: j.CreatedAt}
		s.keys[keyID(j.Owner, key)] = k // reserved: a concurrent replay waits on the job below
	}
	if _, ok := s.entries[j.Code]; ok {
		s.mu.Unlock()
		return job.Job{}, false, fmt.Errorf("create %s: code already exists", j.Code)
	}
	e := &entry{job: j, key: key, changed: make(chan struct{})}
	e.mu.Lock() // readers of a half-created job wait for the write
	s.entries[j.Code] = e
	s.mu.Unlock()
	defer e.mu.Unlock()

	if s.disk != nil {
		if err := s.disk.createJob(j, key, k); err != nil {
			e.changed = nil // anyone who waited on it sees it never existed
			s.mu.Lock()
			delete(s.entries, j.Code)
			if key != "" {
				delete(s.keys, keyID(j.Owner, key))
			}
			s.mu.Unlock()
			return job.Job{}, false, fmt.Errorf("create %s: %w", j.Code, err)
		}
	}
	s.mu.Lock()
	s.count(&j, 1)
	s.mu.Unlock()
	return j, true, nil
}

// lock returns code's entry locked; the caller unlocks it.
func (s *jobs) lock(code string) (*entry, error) {
	s.mu.Lock()
	e, ok := s.entries[code]
	s.mu.Unlock()
	if !ok {
		return nil, job.ErrNotFound
	}
	e.mu.Lock()
	if e.changed == nil {
		e.mu.Unlock()
		return nil, job.ErrNotFound // deleted while we waited
	}
	return e, nil
}

func (s *jobs) Get(_ context.Context, code string) (job.Job, error) {
	e, err := s.lock(code)
	if err != nil {
		return job.Job{}, err
	}
	defer e.mu.Unlock()
	return e.job, nil
}

func (s *jobs) Update(_ context.Context, code string, change func(*job.Job) error) (job.Job, error) {
	e, err := s.lock(code)
	if err != nil {
		return job.Job{}, err
	}
	defer e.mu.Unlock()
	next := e.job
	if err := change(&next); err != nil {
		return e.job, err
	}
	next.Seq = e.job.Seq + 1
	next.UpdatedAt = s.now().UTC()
	if s.disk != nil && !s.publishUnwritten(code, e, next) {
		// Durable before visible: a watcher never sees a state a crash
		// could take back.
		ceiling := e.ceiling
		if s.progress != nil && next.Status == job.StatusInProgress {
			ceiling = max(ceiling, next.Seq+seqBlock)
		}
		if err := s.disk.putJob(next, e.key, ceiling); err != nil {
			return e.job, fmt.Errorf("update %s: %w", code, err)
		}
		e.ceiling, e.dirty = ceiling, false // the latest is on disk
	}
	if next.Status != e.job.Status {
		s.mu.Lock()
		s.count(&e.job, -1)
		s.count(&next, 1)
		s.mu.Unlock()
	}
	e.job = next
	e.wake()
	e.changed = make(chan struct{})
	return next, nil
}

// wake tells e's watchers that it changed; e.mu is held.
func (e *entry) wake() {
	close(e.changed)
	for _, w := range e.wakers {
		w.Wake()
	}
	clear(e.wakers)
	e.wakers = e.wakers[:0]
}

func (s *jobs) Watch(_ context.Context, code string) (job.Job, <-chan struct{}, error) {
	e, err := s.lock(code)
	if err != nil {
		return job.Job{}, nil, err
	}
	defer e.mu.Unlock()
	return e.job, e.changed, nil
}

func (s *jobs) WatchNotify(_ context.Context, code string, w Waker) (job.Job, error) {
	e, err := s.lock(code)
	if err != nil {
		return job.Job{}, err
	}
	defer e.mu.Unlock()
	e.wakers = append(e.wakers, w)
	return e.job, nil
}

func (s *jobs) Unwatch(code string, w Waker) {
	s.mu.Lock()
	e, ok := s.entries[code]
	s.mu.Unlock()
	if !ok {
		return // deleted: its watchers were woken
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if i := slices.Index(e.wakers, w); i >= 0 {
		e.wakers = slices.Delete(e.wakers, i, i+1)
	}
}

func (s *jobs) List(_ context.Context, owner string) ([]job.Job, error) {
	var out []job.Job
	for _, e := range s.snapshot() {
		e.mu.Lock()
		if e.changed != nil && e.job.Owner == owner {
			out = append(out, e.job)
		}
		e.mu.Unlock()
	}
	slices.SortFunc(out, func(a, b job.Job) int {
		if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
			return c
		}
		return compareStrings(b.Code, a.Code)
	})
	return out, nil
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (s *jobs) Delete(_ context.Context, code string) error {
	return s.remove(code, nil)
}

// remove deletes code, leaving tomb if it is set, and wakes its watchers.
func (s *jobs) remove(code string, tomb *tombstone) error {
	e, err := s.lock(code)
	if err != nil {
		return err
	}
	defer e.mu.Unlock()
	if s.disk != nil {
		if err := s.disk.deleteJob(code, tomb); err != nil {
			return fmt.Errorf("delete %s: %w", code, err)
		}
	}
	s.mu.Lock()
	delete(s.entries, code)
	s.count(&e.job, -1)
	if tomb != nil {
		s.gone[code] = *tomb
	}
	s.mu.Unlock()
	if e.dirty {
		s.progress.forget(code)
		e.dirty = false
	}
	e.wake()
	e.changed = nil
	return nil
}

func (s *jobs) Expired(_ context.Context, code string) (string, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.gone[code]
	return t.Owner, ok, nil
}

func (s *jobs) Sweep(_ context.Context, now time.Time, retention time.Duration) ([]job.Job, error) {
	cutoff := now.Add(-retention)
	var expired []job.Job
	for _, e := range s.snapshot() {
		e.mu.Lock()
		if e.changed != nil && e.job.Status.Terminal() && e.job.UpdatedAt.Before(cutoff) {
			expired = append(expired, e.job)
		}
		e.mu.Unlock()
	}

	var errs []error
	var deleted []job.Job
	for _, j := range expired {
		var tomb *tombstone
		if j.File != nil {
			tomb = &tombstone{Owner: j.Owner, At: now.UTC()}
		}
		if err := s.remove(j.Code, tomb); err != nil && !errors.Is(err, job.ErrNotFound) {
			errs = append(errs, err)
			continue
		}
		deleted = append(deleted, j)
	}
	s.mu.Lock()
	for id, k := range s.keys {
		if k.CreatedAt.Before(cutoff) {
			delete(s.keys, id)
		}
	}
	for code, t := range s.gone {
		if t.At.Before(cutoff) {
			delete(s.gone, code)
		}
	}
	s.mu.Unlock()
	if s.disk != nil {
		if err := s.disk.sweep(cutoff); err != nil {
			errs = append(errs, err)
		}
	}
	return deleted, errors.Join(errs...)
}

func (s *jobs) Unfinished(_ context.Context) ([]job.Job, error) {
	var out []job.Job
	for _, e := range s.snapshot() {
		e.mu.Lock()
		if e.changed != nil && !e.job.Status.Terminal() {
			out = append(out, e.job)
		}
		e.mu.Unlock()
	}
	slices.SortFunc(out, func(a, b job.Job) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return out, nil
}

// snapshot returns the entries so they can be read without holding s.mu.
func (s *jobs) snapshot() []*entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	entries := make([]*entry, 0, len(s.entries))
	for _, e := range s.entries {
		entries = append(entries, e)
	}
	return entries
}

// Stats copies the counts kept as jobs change: O(statuses + owners with
// unfinished jobs), not O(jobs).
func (s *jobs) Stats(context.Context) (map[job.Status]int, map[string]int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.byStatus), maps.Clone(s.active), nil
}

// Close writes the progress not yet on disk, then closes the database.
func (s *jobs) Close() error {
	var err error
	if s.progress != nil {
		err = s.progress.close()
	}
	if s.disk != nil {
		err = errors.Join(err, s.disk.close())
	}
	return err
}
