package store

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/exportstream/exportstream/backend/internal/job"
)

// seqBlock is how many seqs a durable write of a running job reserves for
// progress ticks seen before they are written (see the package doc).
const seqBlock = 64

// DefaultProgressCheckpoint is how often the durable store writes the
// progress published since its last checkpoint.
const DefaultProgressCheckpoint = 200 * time.Millisecond

// checkpoint is a job's latest snapshot on its way to disk.
type checkpoint struct {
	job     job.Job
	key     string
	ceiling int64
}

// progressOnly reports whether next changes nothing of a running job but
// its progress and rowsDone (and the seq and time every change moves).
func progressOnly(prev, next job.Job) bool {
	if prev.Status != job.StatusInProgress {
		return false
	}
	next.Progress, next.RowsDone, next.Seq, next.UpdatedAt = prev.Progress, prev.RowsDone, prev.Seq, prev.UpdatedAt
	return next == prev
}

// publishUnwritten reports whether next, the change Update is making to
// e (locked), may be seen before it is written: a progress tick whose seq
// the disk has reserved, while the store is open. It is then marked for
// the next checkpoint.
func (s *jobs) publishUnwritten(code string, e *entry, next job.Job) bool {
	if s.progress == nil || next.Seq > e.ceiling || !progressOnly(e.job, next) {
		return false
	}
	return s.progress.mark(code, e)
}

// checkpointer writes, every interval, the latest snapshot of each job
// whose progress was published unwritten: one group commit for all of
// them, however many ticks they had since the last one.
type checkpointer struct {
	write  func([]checkpoint) error
	all    func() []*entry // every job, for the last checkpoint
	closed atomic.Bool

	mu    sync.Mutex
	dirty map[string]*entry // code → entry with progress not yet written

	stop chan struct{}
	done chan struct{}
	once sync.Once
	err  error // the last checkpoint's, at close
}

func newCheckpointer(every time.Duration, write func([]checkpoint) error, all func() []*entry) *checkpointer {
	c := &checkpointer{write: write, all: all, dirty: make(map[string]*entry), stop: make(chan struct{}), done: make(chan struct{})}
	go c.run(every)
	return c
}

func (c *checkpointer) run(every time.Duration) {
	defer close(c.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
			// What failed stays marked and is tried again at the next tick;
			// a job that cannot be written fails through its own durable
			// change soon enough.
			_ = c.flush()
		}
	}
}

// mark records that e (locked) holds progress not yet written. It
// returns false once the store is closing: the change must then be
// written before it is seen, as any other.
func (c *checkpointer) mark(code string, e *entry) bool {
	if c.closed.Load() {
		return false
	}
	if e.dirty {
		return true // marked already: the checkpoint takes the latest
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed.Load() {
		return false
	}
	c.dirty[code] = e
	e.dirty = true
	return true
}

// forget unmarks a deleted job; e is locked.
func (c *checkpointer) forget(code string) {
	c.mu.Lock()
	delete(c.dirty, code)
	c.mu.Unlock()
}

// flush writes the latest snapshot of every marked job, each with a new
// ceiling a block above its seq: a job ticking fewer than seqBlock times
// per interval never has a tick wait for the disk.
func (c *checkpointer) flush() error {
	c.mu.Lock()
	batch := c.dirty
	c.dirty = make(map[string]*entry, len(batch))
	c.mu.Unlock()

	cps := make([]checkpoint, 0, len(batch))
	entries := make([]*entry, 0, len(batch))
	for _, e := range batch {
		e.mu.Lock()
		if e.dirty && e.changed != nil {
			cps = append(cps, checkpoint{job: e.job, key: e.key, ceiling: max(e.ceiling, e.job.Seq+seqBlock)})
			entries = append(entries, e)
			e.dirty = false
		}
		e.mu.Unlock()
	}
	return c.writeOrMark(cps, entries)
}

// flushLast is the checkpoint at close, when every later change is
// written before it is seen: it writes the marked jobs and gives back
// every running job's unused reservation (ceiling = seq, as nothing past
// its seq was published), so a clean restart continues each job's seqs
// without a jump.
func (c *checkpointer) flushLast() error {
	all := c.all()
	cps := make([]checkpoint, 0, len(all))
	entries := make([]*entry, 0, len(all))
	for _, e := range all {
		e.mu.Lock()
		if e.changed != nil && !e.job.Status.Terminal() && (e.dirty || e.ceiling > e.job.Seq) {
			e.ceiling, e.dirty = e.job.Seq, false
			cps = append(cps, checkpoint{job: e.job, key: e.key, ceiling: e.ceiling})
			entries = append(entries, e)
		}
		e.mu.Unlock()
	}
	return c.writeOrMark(cps, entries)
}

// writeOrMark writes cps, the snapshots of entries. Written, each
// entry's ceiling is raised to its checkpoint's only now, once the disk
// holds it (or a newer write of the job, whose ceiling is higher still).
// Not written, the entries are marked again for the next checkpoint.
func (c *checkpointer) writeOrMark(cps []checkpoint, entries []*entry) error {
	if len(cps) == 0 {
		return nil
	}
	err := c.write(cps)
	for i, e := range entries {
		e.mu.Lock()
		switch {
		case err == nil:
			e.ceiling = max(e.ceiling, cps[i].ceiling)
		case e.changed != nil && !e.dirty && e.job.Seq == cps[i].job.Seq:
			// Nothing newer since: a newer tick would have marked it
			// itself, a newer durable change written it.
			c.mu.Lock()
			c.dirty[cps[i].job.Code] = e
			c.mu.Unlock()
			e.dirty = true
		}
		e.mu.Unlock()
	}
	return err
}

// close stops the ticks and writes what is still marked; from then on
// every change is written before it is seen.
func (c *checkpointer) close() error {
	c.once.Do(func() {
		c.closed.Store(true)
		close(c.stop)
		<-c.done
		c.err = c.flushLast()
	})
	return c.err
}
