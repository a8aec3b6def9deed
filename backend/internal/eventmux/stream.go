package eventmux

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"

	"github.com/redis/go-redis/v9"

	"github.com/exportstream/exportstream/backend/internal/job"
	"github.com/exportstream/exportstream/internal/envelope"
)

// Stream is one open multiplexed stream: its subscriptions and the
// envelopes they left for its writer.
type Stream struct {
	id     string
	hub    *Hub
	encode Encoder

	// ctx bounds every subscription's reads: Close, or a failure, cancels it.
	ctx    context.Context
	cancel context.CancelCauseFunc
	ready  chan struct{}  // holds a token when something became pending
	wg     sync.WaitGroup // subscriptions' reads, and receive in Redis mode

	// Redis mode: its channel, and receive's end (once Redis confirmed
	// the unsubscription, or the channel failed).
	pubsub   *redis.PubSub
	received chan struct{}

	mu      sync.Mutex
	closed  bool
	subs    map[subKey]*subscription // by owner and code as subscribed
	pending map[subKey]*list.Element // its element of order
	order   list.List                // of envelope.Envelope, by first becoming pending
	ending  int                      // pending ends: their subscription is gone but they count against the bound
}

// subKey names a subscription: one owner's calls for a code never meet
// another owner's for the same code.
type subKey struct{ owner, code string }

func keyOf(env envelope.Envelope) subKey { return subKey{env.Owner, env.Code} }

// errClosed is the cause of a stream's end by Close.
var errClosed = errors.New("event stream closed")

func newStream(h *Hub, id string, encode Encoder) *Stream {
	ctx, cancel := context.WithCancelCause(context.Background())
	return &Stream{
		id: id, hub: h, encode: encode, ctx: ctx, cancel: cancel,
		ready: make(chan struct{}, 1),
		subs:  make(map[subKey]*subscription), pending: make(map[subKey]*list.Element),
	}
}

// ID is what the subscription calls name the stream by.
func (s *Stream) ID() string { return s.id }

// Ready receives when envelopes became pending; Take them.
func (s *Stream) Ready() <-chan struct{} { return s.ready }

// Done is closed when the stream can go on no longer (the store or, in
// Redis mode, its channel failed) and when it is closed. Err says why.
func (s *Stream) Done() <-chan struct{} { return s.ctx.Done() }

// Err is why Done was closed.
func (s *Stream) Err() error { return context.Cause(s.ctx) }

// Take appends the pending envelopes to into, in the order their codes
// became pending, and leaves none pending.
func (s *Stream) Take(into []envelope.Envelope) []envelope.Envelope {
	s.mu.Lock()
	defer s.mu.Unlock()
	for el := s.order.Front(); el != nil; el = el.Next() {
		env := el.Value.(envelope.Envelope)
		into = append(into, env)
		if env.End != "" {
			s.ending--
		}
	}
	s.hub.pending.Add(-int64(len(s.pending)))
	s.order.Init()
	clear(s.pending)
	return into
}

// Close ends the stream: the store wakes none of its subscriptions any
// more, their reads (and, in Redis mode, its channel's goroutine) have
// returned when Close does, and no call reaches it any more (404).
func (s *Stream) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true // calls still arriving answer ErrStreamNotFound
	subs := slices.Collect(maps.Values(s.subs))
	s.hub.subscriptions.Add(-int64(len(s.subs)))
	s.hub.pending.Add(-int64(len(s.pending)))
	clear(s.subs)
	clear(s.pending)
	s.order.Init()
	s.ending = 0
	s.mu.Unlock()
	s.cancel(errClosed)
	for _, sub := range subs {
		sub.unwatch()
	}
	if s.pubsub != nil {
		s.unlisten()
	}
	// No Wake can start a read now (each was unwatched, and a read in
	// progress finds the stream closed and unwatches itself).
	s.wg.Wait()
	s.hub.remove(s.id)
}

// fail ends the stream because it cannot go on; its caller reconnects and
// subscribes its codes again from their last seqs.
func (s *Stream) fail(err error) {
	if s.ctx.Err() != nil {
		return
	}
	s.hub.log.Warn("event stream failed", "stream", s.id, "err", err)
	s.cancel(err)
}

// subscribe starts following code for owner from after, replacing the
// code's subscription and dropping what it left unsent.
func (s *Stream) subscribe(code, owner string, after int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrStreamNotFound
	}
	k := subKey{owner, code}
	old, replacing := s.subs[k]
	if !replacing {
		held := len(s.subs) + s.ending
		if s.pendingEnd(k) {
			held-- // dropped below
		}
		if held >= s.hub.cfg.MaxSubscriptions {
			return ErrTooManySubscriptions
		}
		s.hub.subscriptions.Add(1)
	} else {
		old.unwatch()
	}
	s.dropLocked(k)
	sub := &subscription{s: s, code: code, stored: storedCode(code), owner: owner, after: after, progress: -1, running: true}
	s.subs[k] = sub
	s.hub.subscribed.Add(1)
	s.wg.Add(1)
	go sub.run()
	return nil
}

// unsubscribe stops following owner's code and drops what it left unsent.
func (s *Stream) unsubscribe(code, owner string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrStreamNotFound
	}
	k := subKey{owner, code}
	if sub, ok := s.subs[k]; ok {
		sub.unwatch()
		delete(s.subs, k)
		s.hub.subscriptions.Add(-1)
	}
	s.dropLocked(k)
	return nil
}

func (s *Stream) pendingEnd(k subKey) bool {
	el, ok := s.pending[k]
	return ok && el.Value.(envelope.Envelope).End != ""
}

// dropLocked removes k's pending envelope, if any; s.mu is held.
func (s *Stream) dropLocked(k subKey) {
	el, ok := s.pending[k]
	if !ok {
		return
	}
	if el.Value.(envelope.Envelope).End != "" {
		s.ending--
	}
	s.order.Remove(el)
	delete(s.pending, k)
	s.hub.pending.Add(-1)
}

// offer leaves env pending for the writer if sub is still code's
// subscription, replacing code's unsent envelope. An end removes the
// subscription. It reports whether sub is still subscribed.
func (s *Stream) offer(sub *subscription, env envelope.Envelope) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.currentLocked(sub) {
		return false
	}
	k := keyOf(env)
	if env.End != "" {
		delete(s.subs, k)
		s.hub.subscriptions.Add(-1)
		s.ending++
	}
	// An unsent envelope of code is sub's own (subscribe dropped any
	// other), and not an end (sub would be gone): latest wins.
	if el, ok := s.pending[k]; ok {
		el.Value = env
	} else {
		s.pending[k] = s.order.PushBack(env)
		s.hub.pending.Add(1)
	}
	select {
	case s.ready <- struct{}{}:
	default: // the writer has a token already
	}
	return true
}

// subscribed reports whether sub is still its code's subscription.
func (s *Stream) subscribed(sub *subscription) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.currentLocked(sub)
}

// currentLocked is subscribed with s.mu held.
func (s *Stream) currentLocked(sub *subscription) bool {
	return !s.closed && s.subs[subKey{sub.owner, sub.code}] == sub
}

// subscription is one owner's code on a stream. It has no goroutine of
// its own while it waits: the store wakes it at the job's next change
// (store.WatchNotify), and a goroutine runs only while it reads the job
// and leaves the snapshot for the writer. So an idle subscription costs
// a few hundred bytes, not a goroutine's stack.
type subscription struct {
	s           *Stream
	code, owner string // as subscribed
	stored      string // code as the store has it; "" if it is no job code
	after       int64  // the last seq left for the writer; only run uses it
	progress    int    // the progress of that snapshot, -1 before the first; only run uses it

	mu      sync.Mutex
	running bool // run is reading
	again   bool // woken while reading: read once more
}

// Wake is the store's notification of a change: read the job again, in a
// goroutine unless one is reading now. It runs with the store's locks held.
func (sub *subscription) Wake() {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	if sub.running {
		sub.again = true
		return
	}
	sub.running = true
	sub.s.wg.Add(1)
	go sub.run()
}

// run reads until the subscription needs no read (it waits for the store,
// or it ended).
func (sub *subscription) run() {
	defer sub.s.wg.Done()
	for {
		done := sub.read()
		sub.mu.Lock()
		if done || !sub.again {
			sub.running = false
			sub.mu.Unlock()
			return
		}
		sub.again = false
		sub.mu.Unlock()
	}
}

// unwatch stops the store's notifications; the subscription is no longer
// its code's, or its stream is closed.
func (sub *subscription) unwatch() {
	if sub.stored != "" {
		sub.s.hub.cfg.Store.Unwatch(sub.stored, sub)
	}
}

// storedCode is code as the store has it (job.ParseCode's canonical form),
// or "" if code is no job code.
func storedCode(code string) string {
	canonical, err := job.ParseCode(code)
	switch {
	case err != nil:
		return ""
	case canonical == code:
		return code // no second copy
	}
	return canonical
}

// read reads the job and leaves a snapshot newer than after (or the end)
// for the writer. Unless the job ended, the store wakes sub at its next
// change; done reports that it will not (ended, or no longer subscribed).
//
// It keeps store.Follow's contract, which the per-job stream runs: the
// current snapshot at once, then the latest after each change, the
// terminal one always; never another owner's data.
func (sub *subscription) read() (done bool) {
	s := sub.s
	if sub.stored == "" {
		s.offer(sub, envelope.Ended(sub.owner, sub.code, envelope.EndNotFound))
		return true
	}
	snap, err := s.hub.cfg.Store.WatchNotify(s.ctx, sub.stored, sub)
	switch {
	case errors.Is(err, job.ErrNotFound):
		s.offer(sub, envelope.Ended(sub.owner, sub.code, envelope.EndNotFound))
		return true
	case err != nil:
		s.fail(fmt.Errorf("follow %s: %w", sub.code, err)) // nothing if the stream ended
		return true
	}
	ends := snap.Owner != sub.owner || snap.Status.Terminal()
	if ends {
		sub.unwatch()
	}
	var env envelope.Envelope
	switch {
	case snap.Owner != sub.owner:
		env = envelope.Ended(sub.owner, sub.code, envelope.EndNotFound)
	case snap.Seq > sub.after:
		data, err := s.encode(snap)
		if err != nil {
			sub.unwatch()
			s.fail(fmt.Errorf("follow %s: %w", sub.code, err))
			return true
		}
		env = envelope.Snapshot(sub.owner, sub.code, strconv.FormatInt(snap.Seq, 10), string(data), snap.Status.Terminal())
		env.Cut = job.CutsStream(snap, sub.progress)
		sub.after, sub.progress = snap.Seq, snap.Progress
	case ends:
		// The job ended at or before after: the caller has its last snapshot.
		env = envelope.Ended(sub.owner, sub.code, envelope.EndDone)
	default:
		if !s.subscribed(sub) {
			sub.unwatch()
			return true
		}
		return false
	}
	if !s.offer(sub, env) {
		sub.unwatch()
		return true
	}
	return ends
}
