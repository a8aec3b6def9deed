// Package eventmux keeps the backend's multiplexed event streams (GET
// /v1/events, docs/multiplexed-stream.md): a trusted service (the BFF)
// opens one stream, then adds and removes codes on it while it is open,
// each with an owner and the last seq it has, and the stream carries every
// subscribed code's events, each in an envelope (package envelope).
//
// A subscription has no goroutine while it waits: the store wakes it at
// its job's next change (store.WatchNotify), and a goroutine runs only
// while it reads the job, keeping store.Follow's contract (the loop the
// per-job stream runs). So an idle subscription costs a few hundred bytes,
// not a goroutine's stack. It never waits for the reader: it leaves its
// latest envelope in the stream's pending set, one per code, which the
// writer takes in the order the codes first became pending. A newer
// snapshot replaces an unsent one; nothing replaces an end, since nothing
// follows it. So a slow reader skips intermediate progress, never a
// terminal snapshot, and a stream holds at most one envelope per
// subscription (MaxSubscriptions bounds them, ends not yet written included).
//
// In Redis mode every subscription call, even one for a stream of this
// replica, is published on the stream's channel and applied by the
// replica that holds the stream, in the order of publication; a PUT waits
// for that replica's answer (subscribed, or too many). See redis.go.
package eventmux

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/exportstream/exportstream/backend/internal/job"
	"github.com/exportstream/exportstream/backend/internal/store"
)

// DefaultMaxSubscriptions is Config.MaxSubscriptions when it is not set.
const DefaultMaxSubscriptions = 100_000

// The errors of the subscription calls; the HTTP layer maps each to a status.
var (
	// ErrStreamNotFound: no such stream is open (here, or on any replica).
	ErrStreamNotFound = errors.New("no such event stream is open")
	// ErrTooManySubscriptions: the stream holds MaxSubscriptions.
	ErrTooManySubscriptions = errors.New("the event stream holds as many subscriptions as it may; unsubscribe some first")
	// ErrNoAnswer: in Redis mode, the replica holding the stream did not
	// confirm a subscription in time.
	ErrNoAnswer = errors.New("the replica holding the event stream did not answer in time, try again")
)

// Config is what a Hub needs.
type Config struct {
	Store  store.Store
	Logger *slog.Logger
	// MaxSubscriptions bounds one stream's subscriptions; 0 means
	// DefaultMaxSubscriptions.
	MaxSubscriptions int
	// Redis, when set, carries subscription calls between replicas, on
	// channels under Prefix (the store's).
	Redis  *redis.Client
	Prefix string
	// AnswerTimeout bounds how long a subscription call waits for the
	// answer of the replica holding the stream (Redis mode); 0 means 5 s.
	AnswerTimeout time.Duration
}

// Encoder makes the data of a snapshot's event, as the stream's caller
// sees it (its file.url).
type Encoder func(job.Job) ([]byte, error)

// Hub is one replica's registry of open streams.
type Hub struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	streams map[string]*Stream

	subscriptions atomic.Int64 // over every stream
	subscribed    atomic.Int64 // subscriptions started, replacements included
	opened        atomic.Int64 // streams opened
	pending       atomic.Int64 // envelopes waiting for their stream's writer
}

// New returns an empty Hub.
func New(cfg Config) *Hub {
	if cfg.MaxSubscriptions <= 0 {
		cfg.MaxSubscriptions = DefaultMaxSubscriptions
	}
	if cfg.AnswerTimeout <= 0 {
		cfg.AnswerTimeout = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Hub{cfg: cfg, log: cfg.Logger, streams: make(map[string]*Stream)}
}

// Open starts a stream with a random id. In Redis mode its channel is
// subscribed, and the subscription confirmed, before Open returns: a call
// published once the caller knows the id reaches it. encode makes each
// snapshot's data. The caller must Close the stream.
func (h *Hub) Open(ctx context.Context, encode Encoder) (*Stream, error) {
	s := newStream(h, uuid.NewString(), encode)
	if h.cfg.Redis != nil {
		if err := s.listen(ctx); err != nil {
			s.cancel(err)
			return nil, err
		}
	}
	h.opened.Add(1)
	h.mu.Lock()
	h.streams[s.id] = s
	h.mu.Unlock()
	return s, nil
}

// Subscribe adds code to the stream for owner from seq after (the last
// seq the caller has), replacing owner's subscription of the code if it
// has one (another owner's of the same code is another subscription).
// What becomes of it (snapshots, or an end) comes on the stream.
func (h *Hub) Subscribe(ctx context.Context, stream, code, owner string, after int64) error {
	if h.cfg.Redis != nil {
		return h.publish(ctx, stream, call{Op: opPut, Code: code, Owner: owner, After: after})
	}
	s, err := h.local(stream)
	if err != nil {
		return err
	}
	return s.subscribe(code, owner, after)
}

// Unsubscribe removes owner's code from the stream; no event of it
// follows, unless it was already written. A code not subscribed is no
// error.
func (h *Hub) Unsubscribe(ctx context.Context, stream, code, owner string) error {
	if h.cfg.Redis != nil {
		return h.publish(ctx, stream, call{Op: opDelete, Code: code, Owner: owner})
	}
	s, err := h.local(stream)
	if err != nil {
		return err
	}
	return s.unsubscribe(code, owner)
}

func (h *Hub) local(id string) (*Stream, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s, ok := h.streams[id]
	if !ok {
		return nil, ErrStreamNotFound
	}
	return s, nil
}

func (h *Hub) remove(id string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.streams, id)
}

// Streams is how many streams this replica holds open.
func (h *Hub) Streams() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.streams)
}

// Subscribed is how many subscriptions this replica's streams started.
func (h *Hub) Subscribed() int64 { return h.subscribed.Load() }

// Opened is how many streams this replica opened.
func (h *Hub) Opened() int64 { return h.opened.Load() }

// Subscriptions is how many subscriptions this replica's streams hold.
func (h *Hub) Subscriptions() int { return int(h.subscriptions.Load()) }

// Pending is how many envelopes wait for their stream's writer: at most
// one per subscription, however slow the readers.
func (h *Hub) Pending() int { return int(h.pending.Load()) }
