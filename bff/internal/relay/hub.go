// Package relay fans job events out from the backend to browsers: one
// upstream event stream per job code, shared by every subscriber of that
// code, opened on the first subscriber and closed when the job ends or the
// last subscriber leaves.
package relay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	sse "github.com/tmaxmax/go-sse"

	"github.com/exportstream/exportstream/bff/internal/backend"
)

// Opener opens the backend event stream of code after lastEventID. It
// returns backend.ErrNotFound or backend.ErrNoContent for those answers.
type Opener func(ctx context.Context, code, lastEventID string) (io.ReadCloser, error)

// Config tunes the hub.
type Config struct {
	// GiveUp is how long the backend may stay unreachable before
	// subscribers get an ERROR event.
	GiveUp time.Duration
	// MinBackoff and MaxBackoff bound the jittered exponential delay
	// between reconnection attempts.
	MinBackoff, MaxBackoff time.Duration
	// Buffer is the most events queued for one subscriber.
	Buffer int
}

// Hub owns the upstreams and their goroutines; Close ends them all.
type Hub struct {
	open Opener
	cfg  Config
	log  *slog.Logger
	// Stats, if set, is told when upstreams open and close (metrics).
	stats Stats

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// mu guards upstreams and every upstream's subscribers and latest
	// event, so a joining subscriber never misses nor repeats an event.
	mu        sync.Mutex
	upstreams map[string]*upstream
}

// Stats receives the hub's counts.
type Stats interface {
	UpstreamOpened()
	UpstreamClosed()
	UpstreamConnected()
}

type upstream struct {
	code   string
	cancel context.CancelFunc
	subs   map[*Subscription]struct{}
	latest *Event
}

// NewHub returns a hub that opens upstreams with open.
func NewHub(open Opener, cfg Config, stats Stats, log *slog.Logger) *Hub {
	ctx, cancel := context.WithCancel(context.Background())
	return &Hub{open: open, cfg: cfg, stats: stats, log: log, ctx: ctx, cancel: cancel, upstreams: make(map[string]*upstream)}
}

// Subscribe joins the upstream of code, opening it if needed. Only events
// with a seq greater than after are delivered; the latest one known is
// queued at once.
func (h *Hub) Subscribe(code string, after int64) *Subscription {
	h.mu.Lock()
	defer h.mu.Unlock()
	up := h.upstreams[code]
	if up == nil {
		ctx, cancel := context.WithCancel(h.ctx)
		up = &upstream{code: code, cancel: cancel, subs: make(map[*Subscription]struct{})}
		h.upstreams[code] = up
		h.stats.UpstreamOpened()
		h.wg.Add(1)
		go h.run(ctx, up)
	}
	s := &Subscription{hub: h, up: up, after: after, ready: make(chan struct{}, 1)}
	up.subs[s] = struct{}{}
	if up.latest != nil {
		s.push(*up.latest)
	}
	return s
}

// Close ends every upstream and waits for their goroutines.
func (h *Hub) Close() {
	h.cancel()
	h.wg.Wait()
}

func (h *Hub) unsubscribe(s *Subscription) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(s.up.subs, s)
	if len(s.up.subs) == 0 && h.upstreams[s.up.code] == s.up {
		delete(h.upstreams, s.up.code)
		s.up.cancel()
	}
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
	if h.upstreams[up.code] == up {
		delete(h.upstreams, up.code)
	}
	for s := range up.subs {
		s.end()
	}
}

// run keeps the upstream of up open until the job ends, the last
// subscriber leaves (ctx is cancelled) or the backend stays away too long.
// After a drop it resumes with Last-Event-ID, so subscribers see a pause.
func (h *Hub) run(ctx context.Context, up *upstream) {
	defer h.wg.Done()
	defer h.stats.UpstreamClosed()
	defer h.finish(up)
	defer up.cancel()

	lastID := ""
	var downSince time.Time
	backoff := h.cfg.MinBackoff
	for {
		body, err := h.open(ctx, up.code, lastID)
		if ctx.Err() != nil {
			closeBody(body)
			return
		}
		switch {
		case errors.Is(err, backend.ErrNotFound):
			h.broadcast(up, errorEvent(up.code, "NOT_FOUND", "export not found"))
			return
		case errors.Is(err, backend.ErrUnauthorized):
			h.log.Error("the backend rejected the service token; check SERVICE_TOKEN on both", "code", up.code)
			h.broadcast(up, errorEvent(up.code, "UPSTREAM_UNAVAILABLE", "the export service cannot be reached; try again later"))
			return
		case errors.Is(err, backend.ErrNoContent):
			// The backend has nothing after lastID: we already relayed the end.
			return
		case err == nil:
			h.stats.UpstreamConnected()
			ended, got, readErr := h.relay(up, body, &lastID)
			closeBody(body)
			if ended || ctx.Err() != nil {
				return
			}
			if got {
				downSince, backoff = time.Time{}, h.cfg.MinBackoff
			}
			err = readErr
		}
		if downSince.IsZero() {
			downSince = time.Now()
		}
		if time.Since(downSince) >= h.cfg.GiveUp {
			h.log.Warn("upstream unreachable, giving up", "code", up.code, "err", err, "after", time.Since(downSince))
			h.broadcast(up, errorEvent(up.code, "UPSTREAM_UNAVAILABLE", "the export service cannot be reached; try again later"))
			return
		}
		h.log.Debug("upstream dropped, reconnecting", "code", up.code, "err", err, "in", backoff)
		if !sleep(ctx, jitter(backoff)) {
			return
		}
		backoff = min(backoff*2, h.cfg.MaxBackoff)
	}
}

// relay reads one upstream connection, broadcasting each event. It reports
// whether a final event was relayed and whether any event arrived.
func (h *Hub) relay(up *upstream, body io.Reader, lastID *string) (ended, got bool, err error) {
	for ev, err := range sse.Read(body, &sse.ReadConfig{MaxEventSize: 1 << 20}) {
		if err != nil {
			return false, got, fmt.Errorf("read upstream: %w", err)
		}
		e := newUpstreamEvent(ev.LastEventID, ev.Data)
		*lastID, got = ev.LastEventID, true
		h.broadcast(up, e)
		if e.End {
			return true, true, nil
		}
	}
	return false, got, io.ErrUnexpectedEOF
}

func closeBody(b io.ReadCloser) {
	if b != nil {
		_ = b.Close()
	}
}

// jitter spreads d over [d/2, d) so reconnecting upstreams do not stampede.
func jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2)
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
