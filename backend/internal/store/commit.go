package store

import (
	"errors"
	"fmt"
	"sync"

	bolt "go.etcd.io/bbolt"
)

// maxGroup bounds the changes committed in one transaction.
const maxGroup = 1024

// errClosed answers changes sent after the store was closed.
var errClosed = errors.New("store closed")

// change is one write waiting for its group's commit.
type change struct {
	fn   func(*bolt.Tx) error
	done chan error // buffered: the committer never waits on a writer
}

// groupCommitter writes every change of the durable store through one
// goroutine: it takes the first waiting change together with every other
// change waiting at that moment (up to maxGroup) into one transaction and
// one fsync, then answers them all. There is no delay: a lone change
// commits at once, and under load the changes that arrive while one group
// commits make up the next. Each caller returns only once its change is on
// disk, so "durable before visible" (and before a 202) holds, as it did
// with one transaction per change, for every change the store writes
// before it publishes it: all but progress ticks (see the package doc),
// which a checkpoint writes later, many jobs in one change.
//
// It replaces bbolt's DB.Batch, which waits up to MaxBatchDelay (10 ms)
// for a batch to fill: under a closed loop of N clients that wait was most
// of a create's latency and capped throughput at about N / 10 ms while the
// process sat idle (see BENCHMARKS.md, create throughput).
type groupCommitter struct {
	db      *bolt.DB
	changes chan *change // unbuffered: a waiting change is a blocked sender
	quit    chan struct{}
	stopped chan struct{}
	once    sync.Once
}

func newGroupCommitter(db *bolt.DB) *groupCommitter {
	g := &groupCommitter{db: db, changes: make(chan *change), quit: make(chan struct{}), stopped: make(chan struct{})}
	go g.run()
	return g
}

// update runs fn in a read-write transaction shared with the changes
// waiting alongside it and returns once that transaction is committed
// (fn's own error if fn failed: then nothing of fn was written, and the
// others were committed without it). fn may run more than once.
func (g *groupCommitter) update(fn func(*bolt.Tx) error) error {
	c := &change{fn: fn, done: make(chan error, 1)}
	select {
	case g.changes <- c:
	case <-g.quit:
		return errClosed
	}
	return <-c.done
}

// close stops the committer after the group in progress; later updates
// get errClosed.
func (g *groupCommitter) close() {
	g.once.Do(func() { close(g.quit) })
	<-g.stopped
}

func (g *groupCommitter) run() {
	defer close(g.stopped)
	group := make([]*change, 0, maxGroup)
	for {
		select {
		case <-g.quit:
			return
		case c := <-g.changes:
			group = append(group[:0], c)
		}
	more:
		for len(group) < maxGroup {
			select {
			case c := <-g.changes:
				group = append(group, c)
			default:
				break more
			}
		}
		g.commit(group)
		clear(group) // let the answered changes go
	}
}

// commit writes group in one transaction. A change whose fn fails is
// answered with that error and the rest are committed without it, as
// DB.Batch does; a failed commit (a full disk, say) is every change's error.
func (g *groupCommitter) commit(group []*change) {
	for len(group) > 0 {
		failed := -1
		err := g.db.Update(func(tx *bolt.Tx) error {
			for i, c := range group {
				if err := safely(c.fn, tx); err != nil {
					failed = i
					return err
				}
			}
			return nil
		})
		if err == nil || failed < 0 {
			for _, c := range group {
				c.done <- err
			}
			return
		}
		group[failed].done <- err
		group = append(group[:failed:failed], group[failed+1:]...)
	}
}

// safely runs fn, turning a panic into an error so that one bad change
// cannot take the committer (and every writer waiting on it) down.
func safely(fn func(*bolt.Tx) error, tx *bolt.Tx) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic in a store change: %v", p)
		}
	}()
	return fn(tx)
}
