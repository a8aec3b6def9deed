// Package worker runs export generation on a bounded pool of goroutines.
//
// The generator is simulated but real: it writes an actual CSV (see
// exportfile.AppendRow) in chunks paced over the requested duration, reporting
// progress through the store, and renames the file into place only when it
// is complete, so a reader never sees half a file. Progress reports are
// checkpoints: a job interrupted by a shutdown resumes from its last
// reported row (the rows before it are rewritten at once, since they are
// deterministic). After a crash it resumes from the last report the store
// had written, which with the embedded store may be a checkpoint interval
// behind (see package store): its progress may step back then, its seq
// never. The file is right either way: it is always written from row 0.
package worker

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/exportstream/exportstream/backend/internal/job"
	"github.com/exportstream/exportstream/backend/internal/store"
	"github.com/exportstream/exportstream/internal/exportfile"
)

// Config sizes the pool.
type Config struct {
	Workers   int    // generations running at once
	QueueSize int    // accepted jobs waiting for a worker
	FilesDir  string // where finished files live
	// ProgressInterval paces progress events: at most one per interval of
	// the generation's schedule, never two within half of it.
	ProgressInterval time.Duration
	// Retention sets a finished file's ExpiresAt.
	Retention time.Duration
	// Durable says the store survives a restart: on shutdown, running jobs
	// are left at their checkpoint to resume, instead of failing.
	Durable bool
	// OnFinish, if set, is told how each generation ended (metrics).
	OnFinish func(status job.Status, took time.Duration)
	// MinFree is the room FilesDir's disk must have left for a new export
	// to be accepted (RoomForNew); 0: only that it is writable.
	MinFree int64
	// Queue, if set, replaces the in-process queue of QueueSize (a
	// RedisQueue, so that several replicas share the work).
	Queue Queue
}

// Pool owns its worker goroutines; Close stops them and waits.
type Pool struct {
	cfg   Config
	store store.Store
	log   *slog.Logger

	queue  Queue
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	closed  bool
	running map[string]context.CancelFunc
}

// New starts cfg.Workers workers.
func New(st store.Store, cfg Config, log *slog.Logger) (*Pool, error) {
	if cfg.Workers < 1 || cfg.QueueSize < 1 {
		return nil, fmt.Errorf("worker pool: workers and queue size must be positive, got %d and %d", cfg.Workers, cfg.QueueSize)
	}
	if err := os.MkdirAll(cfg.FilesDir, 0o750); err != nil {
		return nil, fmt.Errorf("worker pool: create files dir: %w", err)
	}
	if cfg.OnFinish == nil {
		cfg.OnFinish = func(job.Status, time.Duration) {}
	}
	queue := cfg.Queue
	if queue == nil {
		queue = make(chanQueue, cfg.QueueSize)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Pool{
		cfg: cfg, store: st, log: log, queue: queue,
		ctx: ctx, cancel: cancel, running: make(map[string]context.CancelFunc),
	}
	p.wg.Add(cfg.Workers)
	for range cfg.Workers {
		go p.work()
	}
	return p, nil
}

// Resume queues the jobs a previous process left unfinished, oldest first.
// Those that do not fit in the queue fail with INTERRUPTED: never stuck.
// With a shared queue it does nothing: the unfinished jobs are other
// replicas' running ones, and the queue hands a dead one's to a live one.
func (p *Pool) Resume(ctx context.Context) error {
	if p.queue.Shared() {
		return nil
	}
	jobs, err := p.store.Unfinished(ctx)
	if err != nil {
		return fmt.Errorf("resume: %w", err)
	}
	for _, j := range jobs {
		if err := p.Submit(j.Code); err != nil {
			p.fail(j.Code, interrupted)
			continue
		}
		p.log.Info("resuming export", "code", j.Code, "status", j.Status, "rowsDone", j.RowsDone)
	}
	return nil
}

// Submit queues the job with code for generation without blocking.
func (p *Pool) Submit(code string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return job.ErrUnavailable
	}
	return p.queue.Push(p.ctx, code)
}

// Cancel stops code's generation if it is running. The caller has already
// marked it CANCELLED; a queued job is skipped when a worker takes it.
func (p *Pool) Cancel(code string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if cancel, ok := p.running[code]; ok {
		cancel()
	}
}

// RoomForNew says whether the files directory can take a new export:
// job.ErrStorageReadOnly or job.ErrStorageFull if it cannot, so a create
// is refused at once instead of failing once it runs.
func (p *Pool) RoomForNew() error { return store.DiskRoom(p.cfg.FilesDir, p.cfg.MinFree) }

// QueueDepth is how many accepted jobs wait for a worker.
func (p *Pool) QueueDepth() int { return p.queue.Depth() }

// FilePath is where the finished file of code is.
func (p *Pool) FilePath(code string) string {
	return filepath.Join(p.cfg.FilesDir, code+".csv")
}

// RemoveFile deletes code's file, if any.
func (p *Pool) RemoveFile(code string) error {
	if err := os.Remove(p.FilePath(code)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove file of %s: %w", code, err)
	}
	return nil
}

// Close stops taking jobs and interrupts running ones, then waits for every
// worker. With a durable store they stay at their checkpoint and resume at
// the next start; otherwise they fail, so no watcher waits forever.
func (p *Pool) Close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.cancel()
	p.wg.Wait()
	if c, ok := p.queue.(interface{ Close() error }); ok {
		if err := c.Close(); err != nil {
			p.log.Warn("close queue", "err", err)
		}
	}
	if q, ok := p.queue.(chanQueue); ok && !p.cfg.Durable {
		for _, code := range q.drain() {
			p.fail(code, interrupted)
		}
	}
}

var interrupted = &job.Failure{Code: "INTERRUPTED", Message: "the backend stopped before the export finished; start it again"}

// MaxDeliveries is how many workers may take a job in turn, each dying
// with it, before it fails with GENERATION_CRASHED instead of taking
// down the next replica.
const MaxDeliveries = 4

var crashed = &job.Failure{Code: "GENERATION_CRASHED", Message: "the export's generation stopped its backend several times; it is not tried again"}

func (p *Pool) work() {
	defer p.wg.Done()
	backoff := 100 * time.Millisecond
	for {
		t, err := p.queue.Pop(p.ctx)
		if p.ctx.Err() != nil {
			if t != nil {
				t.Release()
			}
			return
		}
		if err != nil {
			// A shared queue that cannot be reached: wait and try again.
			p.log.Warn("take a job from the queue", "err", err, "retryIn", backoff)
			select {
			case <-p.ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		if t.Deliveries > MaxDeliveries {
			// Every replica that took it died with it: do not take a fifth down.
			p.log.Error("an export was taken over too many times; failing it", "code", t.Code, "deliveries", t.Deliveries)
			p.fail(t.Code, crashed)
			t.Done()
			continue
		}
		err = p.run(t)
		switch {
		case p.ctx.Err() != nil, errors.Is(err, job.ErrStoreUnavailable):
			t.Release() // at its checkpoint: for the next worker, here or elsewhere
		default:
			t.Done()
		}
		if err != nil {
			p.log.Error("generation failed", "code", t.Code, "err", err)
		}
	}
}

// run generates t's job under a context that Cancel, Close and the loss of
// the task (another replica took it over) can end.
func (p *Pool) run(t *Task) error {
	code := t.Code
	ctx, cancel := context.WithCancel(p.ctx)
	defer cancel()
	if t.Lost != nil {
		go func() {
			select {
			case <-t.Lost:
				p.log.Warn("export taken over by another replica; stopping here", "code", code)
				cancel()
			case <-ctx.Done():
			}
		}()
	}
	p.mu.Lock()
	p.running[code] = cancel
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.running, code)
		p.mu.Unlock()
	}()
	return p.generate(ctx, code, time.Now())
}

// delayStart keeps a PENDING job with the startDelayMs scenario PENDING
// that long; a job already started (resumed after a restart) goes on. It
// reports false when the job is cancelled or the pool stops first. A store
// that fails here fails the start's own update too, which says so.
func (p *Pool) delayStart(ctx context.Context, code string) bool {
	j, err := p.store.Get(ctx, code)
	if err != nil || j.Status != job.StatusPending || j.Request.StartDelayMs == 0 {
		return true
	}
	return sleep(ctx, time.Duration(j.Request.StartDelayMs)*time.Millisecond) == nil
}

// sleep waits d or until ctx is done, whichever comes first.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// unlessEnded wraps a change so it never touches a job that has ended
// (cancelled while it ran, say).
func unlessEnded(change func(*job.Job)) func(*job.Job) error {
	return func(j *job.Job) error {
		if j.Status.Terminal() {
			return job.ErrTerminal
		}
		change(j)
		return nil
	}
}

func (p *Pool) fail(code string, f *job.Failure) {
	// The pool's context may be done already; the failure must still land.
	_, err := p.store.Update(context.WithoutCancel(p.ctx), code, unlessEnded(func(j *job.Job) {
		j.Status, j.Error = job.StatusFailed, f
	}))
	if err != nil && !errors.Is(err, job.ErrTerminal) {
		p.log.Error("could not mark export failed", "code", code, "err", err)
	}
}

// end makes the generation's final change and reports it to OnFinish
// before anyone can see it, so metrics never lag the event. It returns
// job.ErrTerminal or job.ErrNotFound if the job ended another way first.
func (p *Pool) end(ctx context.Context, code string, start time.Time, change func(*job.Job)) error {
	_, err := p.store.Update(context.WithoutCancel(ctx), code, unlessEnded(func(j *job.Job) {
		change(j)
		p.cfg.OnFinish(j.Status, time.Since(start))
	}))
	return err
}

// generate runs one job from the queue to a terminal state, or leaves it
// at its checkpoint when the pool shuts down.
func (p *Pool) generate(ctx context.Context, code string, start time.Time) error {
	if !p.delayStart(ctx, code) {
		return nil // cancelled, or shutting down while PENDING: as if never taken
	}
	j, err := p.store.Update(ctx, code, unlessEnded(func(j *job.Job) { j.Status = job.StatusInProgress }))
	switch {
	case errors.Is(err, job.ErrTerminal) || errors.Is(err, job.ErrNotFound):
		return nil // cancelled or deleted while queued
	case errors.Is(err, job.ErrStorageFull), errors.Is(err, job.ErrStorageReadOnly):
		p.fail(code, failureOf(err, "")) // never left PENDING for want of disk
		return fmt.Errorf("start %s: %w", code, err)
	case errors.Is(err, job.ErrStoreUnavailable) || p.ctx.Err() != nil:
		return fmt.Errorf("start %s: %w", code, err) // released: tried again
	case err != nil:
		// Anything else would fail again the same way: end the job, so its
		// watchers are told, instead of leaving it PENDING until a restart.
		p.fail(code, &job.Failure{Code: "GENERATION_FAILED", Message: "the export could not be started"})
		return fmt.Errorf("start %s: %w", code, err)
	}
	// A name of its own: after a takeover two workers may briefly write
	// the same job into the shared directory.
	tmp := p.FilePath(code) + "." + rand.Text() + ".tmp"
	sum, size, err := p.writeFile(ctx, j, tmp)
	if err != nil {
		_ = os.Remove(tmp) // on a full disk, this gives the room back at once
		err = store.StorageError(err)
	}
	failed := func(message string) func(*job.Job) {
		return func(j *job.Job) { j.Status, j.Error = job.StatusFailed, failureOf(err, message) }
	}
	var failure *simulatedFailure
	switch {
	case errors.As(err, &failure):
		return ignoreEnded(p.end(ctx, code, start, func(j *job.Job) {
			j.Status, j.Error = job.StatusFailed, &job.Failure{Code: failure.code, Message: failure.Error()}
			j.Progress, j.RowsDone = failure.progress, failure.rowsDone
		}))
	case errors.Is(err, job.ErrTerminal), errors.Is(err, job.ErrNotFound), errors.Is(err, errOvertaken):
		return nil // cancelled or deleted while running, or another worker is ahead
	case errors.Is(err, job.ErrStoreUnavailable):
		return err // left at its checkpoint for a retry, not failed
	case p.ctx.Err() != nil:
		if !p.cfg.Durable {
			p.fail(code, interrupted)
		}
		return nil // durable: left at its checkpoint; Resume picks it up
	case ctx.Err() != nil:
		return nil //nolint:nilerr // a cancelled job is not an error
	case err != nil:
		return errors.Join(fmt.Errorf("write %s: %w", code, err), ignoreEnded(p.end(ctx, code, start, failed("the file could not be written"))))
	}
	if err = os.Rename(tmp, p.FilePath(code)); err != nil {
		_ = os.Remove(tmp)
		err = store.StorageError(err)
		return errors.Join(fmt.Errorf("store %s: %w", code, err), ignoreEnded(p.end(ctx, code, start, failed("the file could not be stored"))))
	}
	err = p.end(ctx, code, start, func(j *job.Job) {
		j.Status, j.Progress, j.RowsDone = job.StatusCompleted, 100, j.RowsTotal
		j.File = &job.File{
			Name:        job.FileName(j.Request, code),
			Size:        size,
			SHA256:      sum,
			ContentType: "text/csv; charset=utf-8",
			ExpiresAt:   time.Now().UTC().Add(expiry(j.Request, p.cfg.Retention)),
		}
	})
	if errors.Is(err, job.ErrTerminal) || errors.Is(err, job.ErrNotFound) {
		p.removeUnlessCompleted(ctx, code)
		return nil
	}
	// Stored, or unknown whether it was (the store failed): the file stays.
	// A COMPLETED job without its file could never be downloaded; a file
	// without its job is only disk until the sweep.
	return err
}

// removeUnlessCompleted deletes code's file when the job ended another way
// while the file was being stored (cancelled or deleted at the last
// moment). Another worker that took the job over may have completed it
// with this same file: only a job read as not COMPLETED loses it, never
// one that could not be read.
func (p *Pool) removeUnlessCompleted(ctx context.Context, code string) {
	j, err := p.store.Get(context.WithoutCancel(ctx), code)
	if (err == nil && j.Status != job.StatusCompleted) || errors.Is(err, job.ErrNotFound) {
		_ = p.RemoveFile(code)
	}
}

// failureOf says why a generation could not finish: a full or read-only
// disk by name (the user can do nothing but try later), else message.
func failureOf(err error, message string) *job.Failure {
	switch {
	case errors.Is(err, job.ErrStorageFull):
		return &job.Failure{Code: "STORAGE_FULL", Message: "the export service ran out of disk space; start the export again later"}
	case errors.Is(err, job.ErrStorageReadOnly):
		return &job.Failure{Code: "STORAGE_READ_ONLY", Message: "the export service's storage became read-only; start the export again later"}
	}
	return &job.Failure{Code: "GENERATION_FAILED", Message: message}
}

// errOvertaken: the job's checkpoint is past this worker's, so another
// worker (one that took the job over) is ahead; this one stops.
var errOvertaken = errors.New("another worker is further along this export")

func ignoreEnded(err error) error {
	if errors.Is(err, job.ErrTerminal) || errors.Is(err, job.ErrNotFound) {
		return nil
	}
	return err
}

// expiry is how long a completed file stays downloadable: the retention
// period, or less with the expireAfterMs scenario.
func expiry(r job.Request, retention time.Duration) time.Duration {
	if r.ExpireAfterMs > 0 {
		return min(retention, time.Duration(r.ExpireAfterMs)*time.Millisecond)
	}
	return retention
}

// simulatedFailure is the failAt scenario firing, with its errorCode.
type simulatedFailure struct {
	failAt, progress, rowsDone int
	code                       string
}

func (f *simulatedFailure) Error() string { return fmt.Sprintf("simulated failure at %d%%", f.failAt) }

// writeFile writes the CSV to path in chunks paced over the requested
// duration, reporting progress, and returns its SHA-256 and size. Rows
// before the job's checkpoint (RowsDone) are written at once.
func (p *Pool) writeFile(ctx context.Context, j job.Job, path string) (string, int64, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o640)
	if err != nil {
		return "", 0, fmt.Errorf("create: %w", err)
	}
	defer func() { _ = f.Close() }()
	h := sha256.New()
	w := &countingWriter{w: io.MultiWriter(f, h)}

	r := j.Request
	if _, err := io.WriteString(w, exportfile.Header); err != nil {
		return "", 0, err
	}
	total := r.Duration()
	chunks := min(max(int(total.Milliseconds()/50), r.Rows/50_000, 1), r.Rows)
	// Pace against a start shifted back by the checkpoint's share of the
	// duration, so a resumed job takes only the time that was left.
	start := time.Now().Add(-total * time.Duration(j.RowsDone) / time.Duration(r.Rows))
	// Progress is paced by the schedule, not by when a timer happened to
	// fire: a chunk is reported when its deadline is an interval after the
	// last reported one's, so 100 ms chunks give 10 events/s however late
	// each timer wakes. Half an interval of wall time between two events
	// still holds when the schedule is behind (a resumed job catching up,
	// a loaded machine), so catching up never bursts.
	var lastDeadline, lastReport time.Time
	reported, stalled := j.Progress, r.StallAt == 0
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
	for k := range chunks {
		from, to := k*r.Rows/chunks, (k+1)*r.Rows/chunks
		if r.FailAt != nil && from*100/r.Rows >= *r.FailAt {
			return "", 0, &simulatedFailure{failAt: *r.FailAt, progress: from * 100 / r.Rows, rowsDone: from, code: cmp.Or(r.ErrorCode, "GENERATION_FAILED")}
		}
		if !stalled && from*100/r.Rows >= r.StallAt {
			stalled = true
			// Progress stops here for stallMs (heartbeats go on): the rest
			// of the schedule moves that much later, unless the checkpoint
			// is past it (stalled before a restart).
			if from >= j.RowsDone {
				start = start.Add(time.Duration(r.StallMs) * time.Millisecond)
			}
		}
		if err := exportfile.WriteRows(w, j.Code, from, to); err != nil {
			return "", 0, err
		}
		if to <= j.RowsDone {
			continue // replaying rows written before the checkpoint
		}
		deadline := start.Add(total * time.Duration(k+1) / time.Duration(chunks))
		timer.Reset(time.Until(deadline))
		select {
		case <-ctx.Done():
			return "", 0, ctx.Err()
		case <-timer.C:
		}
		pct := to * 100 / r.Rows
		interval := p.cfg.ProgressInterval
		if pct != reported && to < r.Rows && deadline.Sub(lastDeadline) >= interval && time.Since(lastReport) >= interval/2 {
			reported, lastDeadline = pct, deadline
			if _, err := p.store.Update(ctx, j.Code, func(j *job.Job) error {
				switch {
				case j.Status.Terminal():
					return job.ErrTerminal
				case j.RowsDone >= to:
					return errOvertaken // progress never goes back
				}
				j.Progress, j.RowsDone = pct, to
				return nil
			}); err != nil {
				return "", 0, fmt.Errorf("report progress: %w", err)
			}
			lastReport = time.Now() // when the event went out, however long the store took
		}
	}
	if err := f.Sync(); err != nil {
		return "", 0, fmt.Errorf("sync: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", 0, fmt.Errorf("close: %w", err)
	}
	return hex.EncodeToString(h.Sum(nil)), w.n, nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += int64(n)
	return n, err
}
