package relay

import (
	"sync"
	"sync/atomic"
)

// Subscription is one browser stream's view of a relayed job. Its queue
// is bounded: since every event is a whole snapshot, when a slow reader
// falls behind the oldest progress snapshots are dropped, never the final
// one (it is always the last in the queue).
type Subscription struct {
	hub   *Hub
	t     *topic
	after int64 // only events with a greater Seq are delivered
	slot  int   // its index in t.subs, -1 when not there; guarded by t.mu
	left  atomic.Bool

	mu     sync.Mutex
	queue  []Event
	spare  []Event // the slice the last Drain returned, reused by the next one
	ended  bool
	ready  chan struct{}
	notify func() // replaces ready once set
}

// Code is the job this subscription follows.
func (s *Subscription) Code() string { return s.t.key.code }

// Ready is signalled when Drain has something new to return; it is nil
// for a subscription made with a notify function, or once Notify set one.
func (s *Subscription) Ready() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ready
}

// Drain returns the queued events and whether the stream is over (nothing
// will follow them). The slice is valid until the next Drain: the two
// queues are swapped, so a steady stream allocates nothing here.
func (s *Subscription) Drain() ([]Event, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	evs := s.queue
	clear(s.spare) // let the previous batch's data be collected
	s.queue, s.spare = s.spare[:0], evs
	return evs, s.ended
}

// Notify calls f, instead of signalling Ready, whenever Drain has
// something new (and now, if it has already). f must not block.
func (s *Subscription) Notify(f func()) {
	s.mu.Lock()
	s.notify = f
	s.ready = nil // no longer signalled: let it go
	pending := len(s.queue) > 0 || s.ended
	s.mu.Unlock()
	if pending {
		f()
	}
}

// Close unsubscribes; the job is unsubscribed upstream when its last
// subscriber leaves (after the linger). Closing again does nothing.
func (s *Subscription) Close() {
	if !s.left.Swap(true) {
		s.hub.unsubscribe(s)
	}
}

func (s *Subscription) push(ev Event) {
	if ev.Seq > 0 && ev.Seq <= s.after {
		return
	}
	s.mu.Lock()
	if len(s.queue) >= s.hub.cfg.Buffer {
		s.queue = append(s.queue[:0], s.queue[1:]...)
		s.hub.stats.SnapshotDropped()
	}
	s.queue = append(s.queue, ev)
	notify, ready := s.notify, s.ready
	s.mu.Unlock()
	signal(notify, ready)
}

func (s *Subscription) end() {
	s.mu.Lock()
	s.ended = true
	notify, ready := s.notify, s.ready
	s.mu.Unlock()
	signal(notify, ready)
}

func signal(notify func(), ready chan struct{}) {
	if notify != nil {
		notify()
		return
	}
	select {
	case ready <- struct{}{}:
	default:
	}
}
