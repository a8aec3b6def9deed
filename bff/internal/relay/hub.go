// Package relay carries job events from the backend to browsers over one
// multiplexed upstream: a single event stream from the backend
// (GET /v1/events, docs/multiplexed-stream.md) on which the hub subscribes
// and unsubscribes jobs as browsers come and go. Upstream connections do
// not grow with users: every browser stream of every session shares it.
//
// A relayed job is a topic, keyed by owner (the session) and code: the
// backend checks ownership per subscription, so a session never joins
// another's. A topic is subscribed on the backend while it has
// subscribers (and a short linger after the last leaves, so a page reload
// does not churn it). After a drop the hub reconnects with jittered
// exponential backoff and subscribes every topic again from the last seq
// it received, so browsers see no gap and no duplicate. A topic that stays
// unsubscribed longer than GiveUp (the backend unreachable, failing or
// overloaded) ends in an ERROR event, as does one the backend does not know.
package relay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	sse "github.com/tmaxmax/go-sse"

	"github.com/exportstream/exportstream/internal/envelope"
)

// Upstream is how the hub reaches the backend.
type Upstream interface {
	// StreamRequest is the request for the multiplexed event stream.
	StreamRequest(ctx context.Context) (*http.Request, error)
	// SubscriptionRequest subscribes (PUT, from after) or unsubscribes
	// (DELETE) owner's job code on the stream.
	SubscriptionRequest(ctx context.Context, method, stream, owner, code string, after int64) (*http.Request, error)
	HTTPClient() *http.Client
}

// Config tunes the hub.
type Config struct {
	// GiveUp is how long a job may stay unsubscribed (the backend
	// refusing, dropping, failing) before its subscribers get an ERROR.
	GiveUp time.Duration
	// MinBackoff and MaxBackoff bound the jittered exponential delay
	// before reconnecting the stream and before retrying a failed
	// subscription call.
	MinBackoff, MaxBackoff time.Duration
	// Buffer is the most events queued for one subscriber.
	Buffer int
	// Linger keeps a job subscribed this long after its last subscriber
	// leaves, for the page reload that comes right back.
	Linger time.Duration
	// IdleTimeout reconnects a stream that sent nothing for this long;
	// set it to a few backend heartbeat intervals. 0: never.
	IdleTimeout time.Duration
	// Calls is how many subscription calls may be in flight at once
	// (a reconnect subscribes every job again). Default 8.
	Calls int
}

// Stats receives the hub's counts (metrics).
type Stats interface {
	TopicOpened()
	TopicClosed()
	UpstreamConnected()
	UpstreamDisconnected()
	SnapshotDropped()
}

// callTimeout bounds one subscription call.
const callTimeout = 10 * time.Second

// Hub owns the upstream, its topics and their goroutines; Close ends them.
type Hub struct {
	src   Upstream
	cfg   Config
	stats Stats
	log   *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	streamClient *http.Client // src's, with the idle timeout
	kick         chan struct{}

	// mu guards the topic map, the stream's identity and every topic's
	// control state (the fields above topic.mu). It is never held while
	// a topic's lock is taken: a topic's fan-out holds only its own lock,
	// so neither other topics nor subscribing and leaving wait for it.
	mu     sync.Mutex
	topics map[topicKey]*topic
	stream string // the open stream's id; "" while there is none
	gen    uint64 // counts streams opened: a topic subscribed on an older one is not subscribed
	drop   context.CancelFunc
	queue  []*topic // topics whose subscription on the backend is to change
}

type topicKey struct{ owner, code string }

type topic struct {
	key topicKey

	// Guarded by Hub.mu.
	n      int    // subscribers; counted here, not from subs, so Hub.mu never waits for mu
	want   bool   // it has subscribers, or lingers
	on     uint64 // the gen of the stream it is subscribed on; 0: none
	busy   bool   // a call for it is in flight: one at a time keeps them in order
	queued bool
	ended  bool // its stream is over; it leaves the map when no call is in flight
	gone   bool // out of the map
	fails  int  // failed calls in a row, for the backoff
	linger *time.Timer
	giveUp *time.Timer

	mu     sync.Mutex
	subs   []*Subscription // each at its slot: one slice, no map per topic
	latest *Event          // the last event with data, for subscribers who join
	seq    int64           // the highest seq received: where a resubscription starts
	closed bool
}

// NewHub returns a hub relaying from src. It connects at once.
func NewHub(src Upstream, cfg Config, stats Stats, log *slog.Logger) *Hub {
	if cfg.Calls <= 0 {
		cfg.Calls = 8
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &Hub{
		src: src, cfg: cfg, stats: stats, log: log, ctx: ctx, cancel: cancel,
		streamClient: idleTimeoutClient(src.HTTPClient(), cfg.IdleTimeout),
		kick:         make(chan struct{}, 1),
		topics:       make(map[topicKey]*topic),
	}
	h.wg.Add(1 + cfg.Calls)
	go h.run()
	for range cfg.Calls {
		go h.caller()
	}
	return h
}

// Subscribe follows owner's job code. Only events with a seq greater than
// after are delivered; the latest one known is queued at once. notify, if
// not nil, is called instead of signalling the subscription's Ready
// channel (see Notify).
func (h *Hub) Subscribe(owner, code string, after int64, notify func()) *Subscription {
	k := topicKey{owner, code}
	s := &Subscription{hub: h, after: after, notify: notify, slot: -1}
	if notify == nil {
		s.ready = make(chan struct{}, 1)
	}
	h.mu.Lock()
	t := h.topics[k]
	fresh := t == nil
	if fresh {
		// The first subscriber is in the topic before anyone can see it,
		// so it gets every event the subscription brings, not only the
		// latest.
		t = &topic{key: k, subs: []*Subscription{s}}
		s.slot = 0
		h.topics[k] = t
		h.stats.TopicOpened()
	}
	s.t = t
	t.n++
	if t.linger != nil {
		t.linger.Stop()
		t.linger = nil
	}
	t.want = true
	h.settleLocked(t)
	h.mu.Unlock()
	if fresh {
		return s
	}

	t.mu.Lock()
	defer t.mu.Unlock()
	if t.latest != nil {
		s.push(*t.latest)
	}
	if t.closed {
		s.end()
		return s
	}
	s.slot = len(t.subs)
	t.subs = append(t.subs, s)
	return s
}

// Close ends the upstream, every topic and every goroutine.
func (h *Hub) Close() {
	h.cancel()
	h.wg.Wait()
	h.mu.Lock()
	topics := make([]*topic, 0, len(h.topics))
	for _, t := range h.topics {
		topics = append(topics, t)
	}
	h.mu.Unlock()
	for _, t := range topics {
		h.end(t, nil)
	}
}

func (h *Hub) unsubscribe(s *Subscription) {
	t := s.t
	t.mu.Lock()
	t.remove(s)
	t.mu.Unlock()
	h.mu.Lock()
	defer h.mu.Unlock()
	t.n--
	if t.n > 0 || t.gone || t.ended {
		return
	}
	if h.cfg.Linger <= 0 {
		t.want = false
		h.settleLocked(t)
		return
	}
	if t.linger == nil {
		t.linger = time.AfterFunc(h.cfg.Linger, func() { h.lingered(t) })
	}
}

func (h *Hub) lingered(t *topic) {
	h.mu.Lock()
	defer h.mu.Unlock()
	t.linger = nil
	if t.n == 0 && !t.gone {
		t.want = false
		h.settleLocked(t)
	}
}

// settleLocked moves t toward what it should be: subscribed on the open
// stream while wanted, unsubscribed and out of the map otherwise. h.mu is
// held.
func (h *Hub) settleLocked(t *topic) {
	if t.gone || t.busy {
		return // the call in flight settles it when it returns
	}
	live := h.stream != "" && t.on == h.gen
	switch {
	case t.ended, !t.want && !live:
		h.removeLocked(t)
	case t.want && !live:
		if t.giveUp == nil {
			t.giveUp = time.AfterFunc(h.cfg.GiveUp, func() { h.expired(t) })
		}
		if h.stream != "" {
			h.enqueueLocked(t)
		}
	case !t.want && live:
		h.enqueueLocked(t) // to unsubscribe
	}
}

func (h *Hub) removeLocked(t *topic) {
	t.gone = true
	if t.linger != nil {
		t.linger.Stop()
	}
	if t.giveUp != nil {
		t.giveUp.Stop()
	}
	if h.topics[t.key] == t {
		delete(h.topics, t.key)
		h.stats.TopicClosed()
	}
}

func (h *Hub) enqueueLocked(t *topic) {
	if t.queued {
		return
	}
	t.queued = true
	h.queue = append(h.queue, t)
	select {
	case h.kick <- struct{}{}:
	default:
	}
}

// expired ends t if it is still not subscribed GiveUp after it began to wait.
func (h *Hub) expired(t *topic) {
	h.mu.Lock()
	live := h.stream != "" && t.on == h.gen
	pending := t.want && !live && !t.ended && !t.gone
	t.giveUp = nil
	h.mu.Unlock()
	if !pending {
		return
	}
	h.log.Warn("the backend did not take a subscription in time, giving up", "code", t.key.code, "after", h.cfg.GiveUp)
	h.end(t, new(Unavailable(t.key.code)))
}

// Unavailable is the ERROR event of code at the give-up: the backend could
// not be reached for GiveUp.
func Unavailable(code string) Event {
	return errorEvent(code, "UPSTREAM_UNAVAILABLE", "the export service cannot be reached; try again later")
}

// end closes t's stream after ev (if not nil) and detaches it.
func (h *Hub) end(t *topic, ev *Event) {
	h.mu.Lock()
	if t.ended {
		h.mu.Unlock()
		return
	}
	t.ended = true
	t.want = false
	h.settleLocked(t)
	h.mu.Unlock()

	t.mu.Lock()
	defer t.mu.Unlock()
	if ev != nil {
		t.latest = ev
		for _, s := range t.subs {
			s.push(*ev)
		}
	}
	t.closed = true
	for _, s := range t.subs {
		s.end()
	}
}

// remove takes s out of t.subs, moving the last one to its slot; t.mu is held.
func (t *topic) remove(s *Subscription) {
	i := s.slot
	if i < 0 || i >= len(t.subs) || t.subs[i] != s {
		return // never added (the topic had ended)
	}
	last := len(t.subs) - 1
	t.subs[i] = t.subs[last]
	t.subs[i].slot = i
	t.subs[last] = nil
	t.subs = t.subs[:last]
	s.slot = -1
}

// deliver routes one event of the stream to its topic.
func (h *Hub) deliver(data string) {
	e, err := parseEnvelope(data)
	if err != nil {
		h.log.Warn("skipping an event of the backend's stream", "err", err)
		return
	}
	h.mu.Lock()
	t := h.topics[topicKey{e.Owner, e.Code}]
	h.mu.Unlock()
	if t == nil {
		return // unsubscribed meanwhile
	}
	switch ev, ok := eventOf(e); {
	case e.End == envelope.EndNotFound:
		h.end(t, new(errorEvent(e.Code, "NOT_FOUND", "export not found")))
	case !ok && e.End == envelope.EndDone:
		h.end(t, nil) // nothing newer than what the subscribers have
	case ev.End:
		h.end(t, &ev)
	case ok:
		t.publish(ev)
	}
}

// publish fans ev out to t's subscribers under t's lock only. An event
// whose seq is not above the highest relayed is one the topic has had: a
// resubscription that races an event already on the wire brings the
// current snapshot again. It is dropped, so no browser sees a seq twice.
func (t *topic) publish(ev Event) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed || ev.Seq > 0 && ev.Seq <= t.seq {
		return
	}
	if ev.Seq > t.seq {
		t.seq = ev.Seq
	}
	if ev.HasData {
		latest := ev
		latest.Cut = false // a joiner's replay of it cuts nothing
		t.latest = &latest
	}
	for _, s := range t.subs {
		s.push(ev)
	}
}

// run keeps the stream open until the hub closes, reconnecting with
// jittered exponential backoff.
func (h *Hub) run() {
	defer h.wg.Done()
	b := backoff{min: h.cfg.MinBackoff, max: h.cfg.MaxBackoff}
	for {
		opened, err := h.connect()
		h.disconnected()
		if h.ctx.Err() != nil {
			return
		}
		if opened {
			b.reset()
		}
		wait := b.next()
		h.log.Debug("backend stream ended, reconnecting", "err", err, "in", wait)
		t := time.NewTimer(wait)
		select {
		case <-h.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// parseStreamID reads the stream's id from its first event.
func parseStreamID(data string) (string, error) {
	var v struct {
		Stream string `json:"stream"`
	}
	if err := json.Unmarshal([]byte(data), &v); err != nil || v.Stream == "" {
		return "", fmt.Errorf("%w: %q", errNoStreamID, data)
	}
	return v.Stream, nil
}

// Errors a stream connection ends with.
var (
	errUnauthorized = errors.New("the backend rejected the service token; check SERVICE_TOKEN on both")
	errNoStreamID   = errors.New("the backend's stream did not say its id")
)

// connect reads one stream connection until it ends; opened reports
// whether the backend said the stream's id (it was usable).
func (h *Hub) connect() (opened bool, err error) {
	ctx, drop := context.WithCancel(h.ctx)
	defer drop()
	h.mu.Lock()
	h.drop = drop
	h.mu.Unlock()

	req, err := h.src.StreamRequest(ctx)
	if err != nil {
		return false, fmt.Errorf("build the stream request: %w", err)
	}
	resp, err := h.streamClient.Do(req)
	if err != nil {
		return false, fmt.Errorf("connect the backend's stream: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		if resp.StatusCode == http.StatusUnauthorized {
			h.log.Error(errUnauthorized.Error())
			return false, errUnauthorized
		}
		return false, fmt.Errorf("the backend's stream answered %d", resp.StatusCode)
	}
	h.stats.UpstreamConnected()
	defer h.stats.UpstreamDisconnected()
	for ev, err := range sse.Read(resp.Body, &sse.ReadConfig{MaxEventSize: 1 << 20}) {
		if err != nil {
			return opened, fmt.Errorf("read the backend's stream: %w", err)
		}
		switch ev.Type {
		case "stream":
			id, err := parseStreamID(ev.Data)
			if err != nil {
				return opened, err
			}
			opened = true
			h.opened(id)
		case "":
			if !opened {
				return false, errNoStreamID
			}
			h.deliver(ev.Data)
		}
		// Other event types are for later versions: skipped.
	}
	return opened, errors.New("the backend's stream ended")
}

// opened records a new stream and subscribes every wanted topic on it.
func (h *Hub) opened(id string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.stream = id
	h.gen++
	for _, t := range h.topics {
		t.fails = 0
		h.settleLocked(t)
	}
}

// disconnected starts every topic's give-up clock.
func (h *Hub) disconnected() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stream == "" {
		return
	}
	h.stream = ""
	h.drop = nil
	for _, t := range h.topics {
		h.settleLocked(t)
	}
}

// caller makes subscription calls for queued topics until the hub closes.
func (h *Hub) caller() {
	defer h.wg.Done()
	for {
		t := h.next()
		if t == nil {
			return
		}
		h.call(t)
	}
}

// next waits for a queued topic; nil when the hub closes.
func (h *Hub) next() *topic {
	for {
		h.mu.Lock()
		if len(h.queue) > 0 {
			t := h.queue[0]
			h.queue[0] = nil
			h.queue = h.queue[1:]
			more := len(h.queue) > 0
			h.mu.Unlock()
			if more {
				select { // pass the kick on to another caller
				case h.kick <- struct{}{}:
				default:
				}
			}
			return t
		}
		h.mu.Unlock()
		select {
		case <-h.ctx.Done():
			return nil
		case <-h.kick:
		}
	}
}

// call subscribes or unsubscribes t on the open stream, as it needs.
func (h *Hub) call(t *topic) {
	h.mu.Lock()
	t.queued = false
	live := h.stream != "" && t.on == h.gen
	method := ""
	switch {
	case t.gone || t.busy || h.stream == "":
	case t.want && !live:
		method = http.MethodPut
	case !t.want && live:
		method = http.MethodDelete
	}
	if method == "" {
		h.mu.Unlock()
		return
	}
	stream, gen := h.stream, h.gen
	t.busy = true
	h.mu.Unlock()

	t.mu.Lock()
	after := t.seq
	t.mu.Unlock()
	status, err := h.send(method, stream, t.key, after)

	h.mu.Lock()
	t.busy = false
	refused := false
	switch {
	case err == nil && status == http.StatusNoContent:
		t.fails = 0
		if method == http.MethodPut {
			t.on = gen
			if t.giveUp != nil {
				t.giveUp.Stop()
				t.giveUp = nil
			}
		} else {
			t.on = 0
		}
		h.settleLocked(t)
	case err == nil && status == http.StatusNotFound:
		// The stream is gone (the backend restarted, or a replica took
		// over): reconnecting subscribes everything again. While it is
		// still the hub's stream, t is settled when the drop is, not sent
		// again on a stream the backend does not know.
		t.on = 0
		if gen == h.gen && h.stream != "" && h.drop != nil {
			h.drop()
			break
		}
		h.settleLocked(t)
	case err == nil && (status == http.StatusUnauthorized || status == http.StatusBadRequest):
		refused = true
	default: // unreachable, 5xx, 429: try again later
		t.fails++
		b := backoff{min: h.cfg.MinBackoff, max: h.cfg.MaxBackoff, n: t.fails - 1}
		wait := b.next()
		h.log.Debug("a subscription call failed, retrying", "code", t.key.code, "status", status, "err", err, "in", wait)
		time.AfterFunc(wait, func() {
			h.mu.Lock()
			defer h.mu.Unlock()
			h.settleLocked(t)
		})
	}
	h.mu.Unlock()
	if refused {
		h.log.Error("the backend refused a subscription", "code", t.key.code, "status", status)
		h.end(t, new(Unavailable(t.key.code)))
	}
}

// send makes one subscription call and returns the backend's status.
func (h *Hub) send(method, stream string, k topicKey, after int64) (int, error) {
	ctx, cancel := context.WithTimeout(h.ctx, callTimeout)
	defer cancel()
	req, err := h.src.SubscriptionRequest(ctx, method, stream, k.owner, k.code, after)
	if err != nil {
		return 0, fmt.Errorf("build a subscription request: %w", err)
	}
	resp, err := h.src.HTTPClient().Do(req)
	if err != nil {
		return 0, fmt.Errorf("subscription call: %w", err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	_ = resp.Body.Close()
	return resp.StatusCode, nil
}

// backoff is a jittered exponential delay: the n-th is drawn from
// [d/2, d] with d = min·2ⁿ, capped at max.
type backoff struct {
	min, max time.Duration
	n        int
}

func (b *backoff) next() time.Duration {
	d := b.min
	for i := 0; i < b.n && d < b.max; i++ {
		d *= 2
	}
	d = min(d, b.max)
	b.n++
	return d/2 + rand.N(d/2+1)
}

func (b *backoff) reset() { b.n = 0 }
