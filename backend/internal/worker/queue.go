package worker

import (
	"context"

	"github.com/exportstream/exportstream/backend/internal/job"
)

// Queue hands accepted jobs to the pool's workers. The default is a
// bounded channel in this process; RedisQueue is one queue that every
// backend replica's workers take from.
type Queue interface {
	// Push queues code without waiting for room: job.ErrQueueFull when full.
	Push(ctx context.Context, code string) error
	// Pop waits for the next job until ctx is done.
	Pop(ctx context.Context) (*Task, error)
	// Depth is how many accepted jobs wait for a worker.
	Depth() int
	// Shared reports whether other processes take from this queue too. A
	// shared queue gives the jobs of a dead process to another itself, so
	// Resume must not queue unfinished jobs a second time.
	Shared() bool
}

// Task is one job taken from a queue. Exactly one of Done or Release is
// called when the worker is through with it.
type Task struct {
	Code string
	// Deliveries is how many times the job has been handed to a worker:
	// past one, earlier holders died with it (a shared queue counts them).
	Deliveries int64
	// Lost is closed when another process has taken the job over (this
	// one was thought dead): the generation stops. Nil: never.
	Lost <-chan struct{}
	// Done: the job ended (or vanished) and leaves the queue.
	Done func()
	// Release: the job was left at its checkpoint (shutdown); another
	// worker may take it at once.
	Release func()
}

// chanQueue is the in-process queue: a buffered channel.
type chanQueue chan string

func (q chanQueue) Push(_ context.Context, code string) error {
	select {
	case q <- code:
		return nil
	default:
		return job.ErrQueueFull
	}
}

func (q chanQueue) Pop(ctx context.Context) (*Task, error) {
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case code := <-q:
		// Release puts the job back (a worker that took it as the pool
		// closed hands it back), so Close fails it or Resume finds it.
		// There is room: Submit stops before a closing pool's workers do.
		release := func() {
			select {
			case q <- code:
			default:
			}
		}
		return &Task{Code: code, Deliveries: 1, Done: func() {}, Release: release}, nil
	}
}

func (q chanQueue) Depth() int   { return len(q) }
func (q chanQueue) Shared() bool { return false }

// drain takes every waiting job without blocking.
func (q chanQueue) drain() []string {
	var codes []string
	for {
		select {
		case code := <-q:
			codes = append(codes, code)
		default:
			return codes
		}
	}
}
