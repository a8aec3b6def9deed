package eventmux

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"

	"github.com/redis/go-redis/v9"

	"github.com/exportstream/exportstream/backend/internal/envelope"
	"github.com/exportstream/exportstream/backend/internal/job"
	"github.com/exportstream/exportstream/backend/internal/store"
)

// Stream is one open multiplexed stream: its subscriptions and the
// envelopes they left for its writer.
type Stream struct {
	id     string
	hub    *Hub
	encode Encoder

	// ctx is every subscription's parent: Close, or a failure, cancels it.
	ctx    context.Context
	cancel context.CancelCauseFunc
	ready  chan struct{} // holds a token when something became pending
	wg     sync.WaitGroup

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

// subscription is one code's goroutine, told to stop by cancel.
type subscription struct {
	cancel context.CancelFunc
}

var (
	// errClosed is the cause of a stream's end by Close.
	errClosed = errors.New("event stream closed")
	// errSuperseded stops a subscription's goroutine whose subscription
	// was replaced or removed.
	errSuperseded = errors.New("subscription superseded")
)

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

// Close ends the stream: its subscriptions' goroutines (and, in Redis
// mode, its channel's) have all returned when Close does, and no call
// reaches it any more (404).
func (s *Stream) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true // calls still arriving answer ErrStreamNotFound
	s.hub.subscriptions.Add(-int64(len(s.subs)))
	s.hub.pending.Add(-int64(len(s.pending)))
	clear(s.subs)
	clear(s.pending)
	s.order.Init()
	s.ending = 0
	s.mu.Unlock()
	s.cancel(errClosed)
	if s.pubsub != nil {
		s.unlisten()
	}
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
		old.cancel()
	}
	s.dropLocked(k)
	ctx, cancel := context.WithCancel(s.ctx)
	sub := &subscription{cancel: cancel}
	s.subs[k] = sub
	s.hub.subscribed.Add(1)
	s.wg.Add(1)
	go s.follow(ctx, sub, code, owner, after)
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
		sub.cancel()
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
	k := keyOf(env)
	if s.closed || s.subs[k] != sub {
		return false
	}
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

// follow is a subscription's goroutine: it follows the job with
// store.Follow and leaves each snapshot, then the end, for the writer.
func (s *Stream) follow(ctx context.Context, sub *subscription, code, owner string, after int64) {
	defer s.wg.Done()
	defer sub.cancel()
	terminalSent := false
	jobCode, err := job.ParseCode(code)
	if err == nil {
		err = store.Follow(ctx, s.hub.cfg.Store, jobCode, owner, after, nil, func(snap job.Job) error {
			data, err := s.encode(snap)
			if err != nil {
				return err
			}
			env := envelope.Snapshot(owner, code, strconv.FormatInt(snap.Seq, 10), string(data), snap.Status.Terminal())
			if !s.offer(sub, env) {
				return errSuperseded
			}
			terminalSent = env.End != ""
			return nil
		})
	}
	switch {
	case err == nil && !terminalSent:
		// The job ended at or before after: the caller has its last snapshot.
		s.offer(sub, envelope.Ended(owner, code, envelope.EndDone))
	case err == nil:
	case errors.Is(err, job.ErrNotFound), errors.Is(err, job.ErrInvalidCode):
		s.offer(sub, envelope.Ended(owner, code, envelope.EndNotFound))
	case errors.Is(err, errSuperseded), ctx.Err() != nil:
		// Unsubscribed, replaced, or the stream ended.
	default:
		s.fail(fmt.Errorf("follow %s: %w", code, err))
	}
}
