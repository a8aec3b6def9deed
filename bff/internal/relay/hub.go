// Package relay fans job events out from the backend to browsers: one
// upstream event stream per job, shared by every subscriber of that job,
// opened on the first subscriber and closed when the job ends or a short
// linger after the last subscriber leaves (so a page reload does not churn
// the upstream).
//
// Upstreams are read with go-sse's Client: it resumes with Last-Event-ID
// after a drop, honours the backend's retry: field and backs off with
// jitter. The hub adds what a relay needs on top: giving up (ERROR) when
// the backend stays away past a deadline or says 404, and fan-out with
// bounded, latest-wins queues.
package relay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	sse "github.com/tmaxmax/go-sse"
)

// Upstream builds the backend request for a job's event stream; the hub
// sends it (and resends it, with Last-Event-ID) through HTTP.
type Upstream interface {
	EventsRequest(ctx context.Context, owner, code string) (*http.Request, error)
	HTTPClient() *http.Client
}

// Errors the response validator gives for answers retrying cannot change.
var (
	errNotFound     = errors.New("the backend does not know this export")
	errNoContent    = errors.New("the backend has nothing newer")
	errUnauthorized = errors.New("the backend rejected the service token")
)

// statusError is an answer retrying may change: a 5xx, a 429.
type statusError struct{ status int }

func (e *statusError) Error() string { return fmt.Sprintf("the backend answered %d", e.status) }

// upstreamAnswer reads the status of an answer to an events request: nil
// for a stream, one of the errors above, or a *statusError.
func upstreamAnswer(status int) error {
	switch status {
	case http.StatusOK:
		return nil
	case http.StatusNotFound:
		return errNotFound
	case http.StatusNoContent:
		return errNoContent
	case http.StatusUnauthorized:
		return errUnauthorized
	}
	return &statusError{status}
}

// statusErrorClient returns c with a retryable answer (a *statusError)
// turned into a failed round trip. go-sse backs off exponentially after a
// failed connection, but counts any response its validator accepts as a
// successful one and resets its backoff to the initial interval: a
// degraded backend would be retried at full speed until the give-up.
func statusErrorClient(c *http.Client) *http.Client {
	cc := *c
	base := c.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	cc.Transport = transportFunc(func(r *http.Request) (*http.Response, error) {
		resp, err := base.RoundTrip(r)
		if err != nil {
			return nil, err
		}
		var retryable *statusError
		// A redirect is left to the client to follow.
		if resp.StatusCode >= 400 && errors.As(upstreamAnswer(resp.StatusCode), &retryable) {
			// Read a little of the error body so the connection can be reused.
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
			_ = resp.Body.Close()
			return nil, retryable
		}
		return resp, nil
	})
	return &cc
}

// Config tunes the hub.
type Config struct {
	// GiveUp is how long the backend may stay unreachable (refusing,
	// dropping or answering 5xx) before subscribers get an ERROR event.
	GiveUp time.Duration
	// MinBackoff and MaxBackoff bound the jittered exponential delay
	// between reconnection attempts, after a failed connection and a 5xx
	// alike (a retry: from the backend replaces MinBackoff).
	MinBackoff, MaxBackoff time.Duration
	// Buffer is the most events queued for one subscriber.
	Buffer int
	// Linger keeps an upstream open this long after its last subscriber
	// leaves, for the page reload that comes right back.
	Linger time.Duration
	// NoCoalesce gives every subscriber an upstream of its own: the seed's
	// design, kept only so benchmarks can compare against it.
	NoCoalesce bool
	// IdleTimeout reconnects an upstream that sent nothing for this long;
	// set it to a few backend heartbeat intervals. 0: never.
	IdleTimeout time.Duration
}

// Stats receives the hub's counts (metrics).
type Stats interface {
	UpstreamOpened()
	UpstreamClosed()
	UpstreamConnected()
	SnapshotDropped()
}

// Hub owns the upstreams and their goroutines; Close ends them all.
type Hub struct {
	src   Upstream
	cfg   Config
	stats Stats
	log   *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// mu guards upstreams and every upstream's subscribers, linger timer
	// and latest event, so a joining subscriber never misses nor repeats one.
	mu        sync.Mutex
	upstreams map[string]*upstream
	unique    int // key suffix when not coalescing

	httpClient *http.Client // src's, with the idle timeout and retryable answers as errors
}

type upstream struct {
	key, owner, code string
	cancel           context.CancelFunc
	subs             map[*Subscription]struct{}
	latest           *Event
	linger           *time.Timer
}

// NewHub returns a hub reading upstreams from src.
func NewHub(src Upstream, cfg Config, stats Stats, log *slog.Logger) *Hub {
	ctx, cancel := context.WithCancel(context.Background())
	return &Hub{
		src: src, cfg: cfg, stats: stats, log: log, ctx: ctx, cancel: cancel, upstreams: make(map[string]*upstream),
		httpClient: statusErrorClient(idleTimeoutClient(src.HTTPClient(), cfg.IdleTimeout)),
	}
}

// Subscribe joins the upstream of owner's job code, opening it if needed.
// Upstreams are keyed by owner too: the backend checks ownership when one
// opens, so a session can never join another session's stream. Only
// events with a seq greater than after are delivered; the latest one known
// is queued at once. notify, if not nil, is called instead of signalling
// the subscription's Ready channel (see Notify).
func (h *Hub) Subscribe(owner, code string, after int64, notify func()) *Subscription {
	h.mu.Lock()
	defer h.mu.Unlock()
	key := owner + "\x00" + code
	if h.cfg.NoCoalesce {
		h.unique++
		key += "\x00" + strconv.Itoa(h.unique)
	}
	up := h.upstreams[key]
	if up == nil {
		ctx, cancel := context.WithCancel(h.ctx)
		up = &upstream{key: key, owner: owner, code: code, cancel: cancel, subs: make(map[*Subscription]struct{})}
		h.upstreams[key] = up
		h.stats.UpstreamOpened()
		h.wg.Add(1)
		go h.run(ctx, up)
	}
	if up.linger != nil {
		up.linger.Stop()
		up.linger = nil
	}
	s := &Subscription{hub: h, up: up, after: after, notify: notify}
	if notify == nil {
		s.ready = make(chan struct{}, 1)
	}
	up.subs[s] = struct{}{}
	if up.latest != nil {
		s.push(*up.latest)
	}
	return s
}

// Close ends every upstream and waits for their goroutines.
func (h *Hub) Close() {
	h.mu.Lock()
	for _, up := range h.upstreams {
		if up.linger != nil {
			up.linger.Stop()
		}
	}
	h.mu.Unlock()
	h.cancel()
	h.wg.Wait()
}

func (h *Hub) unsubscribe(s *Subscription) {
	h.mu.Lock()
	defer h.mu.Unlock()
	up := s.up
	delete(up.subs, s)
	if len(up.subs) > 0 || h.upstreams[up.key] != up {
		return
	}
	if h.cfg.Linger <= 0 || h.cfg.NoCoalesce {
		delete(h.upstreams, up.key)
		up.cancel()
		return
	}
	up.linger = time.AfterFunc(h.cfg.Linger, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		if len(up.subs) == 0 && h.upstreams[up.key] == up {
			delete(h.upstreams, up.key)
			up.cancel()
		}
	})
}

func (h *Hub) broadcast(up *upstream, ev Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	up.latest = &ev
	for s := range up.subs {
		s.push(ev)
	}
}

// finish detaches up from the hub and ends its subscriptions.
func (h *Hub) finish(up *upstream) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.upstreams[up.key] == up {
		delete(h.upstreams, up.key)
	}
	if up.linger != nil {
		up.linger.Stop()
	}
	for s := range up.subs {
		s.end()
	}
}

// run follows one upstream until the job ends, its last subscriber leaves
// (ctx is cancelled), the backend says it does not know the job, or the
// backend stays away longer than GiveUp.
func (h *Hub) run(ctx context.Context, up *upstream) {
	defer h.wg.Done()
	defer h.stats.UpstreamClosed()
	defer h.finish(up)
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	req, err := h.src.EventsRequest(ctx, up.owner, up.code)
	if err != nil {
		h.log.Error("build upstream request", "code", up.code, "err", err)
		h.broadcast(up, errorEvent(up.code, "UPSTREAM_UNAVAILABLE", "the export service cannot be reached; try again later"))
		return
	}

	var (
		mu        sync.Mutex // the callbacks run on the Connect goroutine; Connect returns after them
		ended     bool
		gaveUp    bool
		downSince time.Time
		lastErr   error
		// deadline ends an outage GiveUp after it began. A timer, not a
		// look at the next delay in OnRetry: backed off, that delay can be
		// seconds, and the ERROR must come neither before GiveUp nor long
		// after it.
		deadline *time.Timer
	)
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		downSince = time.Time{} // an expire already under way does nothing
		if deadline != nil {
			deadline.Stop()
		}
	}()
	expire := func() {
		mu.Lock()
		defer mu.Unlock()
		if downSince.IsZero() || time.Since(downSince) < h.cfg.GiveUp {
			return // reachable again since the timer was set
		}
		gaveUp = true
		h.log.Warn("upstream unreachable, giving up", "code", up.code, "err", lastErr, "after", time.Since(downSince))
		stop()
	}
	client := &sse.Client{
		HTTPClient: h.httpClient,
		ResponseValidator: func(r *http.Response) error {
			// Retryable answers never get here: statusErrorClient made
			// them failed connections, so they are backed off.
			if err := upstreamAnswer(r.StatusCode); err != nil {
				return err
			}
			h.stats.UpstreamConnected()
			mu.Lock()
			downSince = time.Time{} // reachable again: the give-up clock restarts
			mu.Unlock()
			return nil
		},
		Backoff: sse.Backoff{
			InitialInterval: h.cfg.MinBackoff,
			Multiplier:      2,
			Jitter:          0.5,
			MaxInterval:     h.cfg.MaxBackoff,
		},
		OnRetry: func(err error, next time.Duration) {
			mu.Lock()
			defer mu.Unlock()
			lastErr = err
			if downSince.IsZero() {
				downSince = time.Now()
				if deadline == nil {
					deadline = time.AfterFunc(h.cfg.GiveUp, expire)
				} else {
					deadline.Reset(h.cfg.GiveUp)
				}
			}
			h.log.Debug("upstream dropped, reconnecting", "code", up.code, "err", err, "in", next)
		},
	}
	conn := client.NewConnection(req)
	conn.Buffer(nil, 1<<20)
	conn.SubscribeToAll(func(ev sse.Event) {
		if ev.Data == "" {
			// go-sse also reports a block holding only retry: or id: as an
			// event; jobs always have data, so there is nothing to relay.
			return
		}
		e := newUpstreamEvent(ev.LastEventID, ev.Data)
		mu.Lock()
		downSince = time.Time{}
		ended = ended || e.End
		mu.Unlock()
		h.broadcast(up, e)
		if e.End {
			stop() // the job is over: do not reconnect
		}
	})
	err = conn.Connect()

	mu.Lock()
	defer mu.Unlock()
	switch {
	case ended:
	case errors.Is(err, errNotFound):
		h.broadcast(up, errorEvent(up.code, "NOT_FOUND", "export not found"))
	case errors.Is(err, errUnauthorized):
		h.log.Error("the backend rejected the service token; check SERVICE_TOKEN on both", "code", up.code)
		h.broadcast(up, errorEvent(up.code, "UPSTREAM_UNAVAILABLE", "the export service cannot be reached; try again later"))
	case gaveUp:
		h.broadcast(up, errorEvent(up.code, "UPSTREAM_UNAVAILABLE", "the export service cannot be reached; try again later"))
	case errors.Is(err, errNoContent), ctx.Err() != nil:
		// Nothing newer will come, or the last subscriber left.
	default:
		h.log.Error("upstream ended", "code", up.code, "err", err)
		h.broadcast(up, errorEvent(up.code, "UPSTREAM_UNAVAILABLE", "the export service cannot be reached; try again later"))
	}
}
