package relay

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// scriptedBackend is a loopback server that answers each event-stream
// request with the next scripted response; the end-to-end behaviour with
// the real backend is tested in the httpapi package.
type scriptedBackend struct {
	srv     *httptest.Server
	scripts chan func(http.ResponseWriter)
	opens   chan string // the Last-Event-ID of each request
}

func newScriptedBackend(t *testing.T) *scriptedBackend {
	t.Helper()
	b := &scriptedBackend{scripts: make(chan func(http.ResponseWriter), 16), opens: make(chan string, 16)}
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.opens <- r.Header.Get("Last-Event-ID")
		select {
		case script := <-b.scripts:
			script(w)
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(b.srv.Close)
	return b
}

func (b *scriptedBackend) EventsRequest(ctx context.Context, _, code string) (*http.Request, error) {
	return http.NewRequestWithContext(ctx, http.MethodGet, b.srv.URL+"/events/"+code, nil)
}

func (b *scriptedBackend) HTTPClient() *http.Client { return b.srv.Client() }

// stream answers with an event stream of body.
func stream(body string) func(http.ResponseWriter) {
	return func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = w.Write([]byte(body))
	}
}

func status(code int) func(http.ResponseWriter) {
	return func(w http.ResponseWriter) { w.WriteHeader(code) }
}

func snapshot(seq int, status string) string {
	return fmt.Sprintf("id: %d\ndata: {\"code\":\"c\",\"status\":%q,\"seq\":%d}\n\n", seq, status, seq)
}

type counts struct{ opened, dropped atomic.Int32 }

func (c *counts) UpstreamOpened()  { c.opened.Add(1) }
func (*counts) UpstreamClosed()    {}
func (*counts) UpstreamConnected() {}
func (c *counts) SnapshotDropped() { c.dropped.Add(1) }

func newTestHub(t *testing.T, b *scriptedBackend, cfg Config) (*Hub, *counts) {
	t.Helper()
	if cfg.Buffer == 0 {
		cfg.Buffer = 64
	}
	if cfg.GiveUp == 0 {
		cfg.GiveUp = time.Minute
	}
	cfg.MinBackoff, cfg.MaxBackoff = time.Millisecond, 5*time.Millisecond
	c := &counts{}
	h := NewHub(b, cfg, c, slog.New(slog.DiscardHandler))
	t.Cleanup(h.Close)
	return h, c
}

// drainAll reads a subscription until it ends.
func drainAll(t *testing.T, s *Subscription) []Event {
	t.Helper()
	var all []Event
	for {
		select {
		case <-s.Ready():
		case <-time.After(10 * time.Second):
			t.Fatal("subscription did not end")
		}
		evs, ended := s.Drain()
		all = append(all, evs...)
		if ended {
			return all
		}
	}
}

// waitEnded waits without draining, as a reader that never reads.
func waitEnded(s *Subscription) {
	for ended := false; !ended; {
		<-s.Ready()
		s.mu.Lock()
		ended = s.ended
		s.mu.Unlock()
	}
}

func TestASlowSubscriberKeepsTheLatestSnapshotsAndAlwaysTheFinalOne(t *testing.T) {
	b := newScriptedBackend(t)
	h, c := newTestHub(t, b, Config{Buffer: 4})
	s := h.Subscribe("o", "c", 0, nil)
	defer s.Close()
	var body strings.Builder
	for seq := 1; seq < 50; seq++ {
		body.WriteString(snapshot(seq, "IN_PROGRESS"))
	}
	body.WriteString(snapshot(50, "COMPLETED"))
	b.scripts <- stream(body.String())

	waitEnded(s)
	evs, _ := s.Drain()
	if len(evs) != 4 {
		t.Errorf("a slow subscriber has %d queued events, want its buffer of 4", len(evs))
	}
	if last := evs[len(evs)-1]; last.Seq != 50 || !last.End {
		t.Errorf("last event = %+v, want the final seq 50", last)
	}
	if got := c.dropped.Load(); got != 46 {
		t.Errorf("%d snapshots counted as dropped, want 46", got)
	}
}

func TestAnUpstreamThatDropsIsResumedWithTheLastEventIDAfterTheBackendsRetry(t *testing.T) {
	b := newScriptedBackend(t)
	h, _ := newTestHub(t, b, Config{})
	s := h.Subscribe("o", "c", 0, nil)
	defer s.Close()
	b.scripts <- stream("retry: 30\n\n" + snapshot(1, "PENDING") + snapshot(2, "IN_PROGRESS"))
	b.scripts <- status(http.StatusServiceUnavailable) // a backend restarting
	b.scripts <- stream(snapshot(3, "COMPLETED"))
	start := time.Now()
	evs := drainAll(t, s)
	if first, second, third := <-b.opens, <-b.opens, <-b.opens; first != "" || second != "2" || third != "2" {
		t.Errorf("opens with Last-Event-ID %q, %q, %q; want none, then 2 twice", first, second, third)
	}
	if len(evs) != 3 || evs[2].Seq != 3 {
		t.Errorf("got %+v, want seqs 1, 2, 3 across the drop", evs)
	}
	if took := time.Since(start); took < 15*time.Millisecond {
		t.Errorf("reconnected after %v, want the backend's retry: 30 ms (jittered by half at most)", took)
	}
}

func TestAnUpstreamThatStaysDownEndsInERROR(t *testing.T) {
	b := newScriptedBackend(t)
	h, _ := newTestHub(t, b, Config{GiveUp: 50 * time.Millisecond})
	s := h.Subscribe("o", "c", 0, nil)
	defer s.Close()
	b.srv.Close() // nothing listens any more
	evs := drainAll(t, s)
	if len(evs) != 1 || evs[0].ErrorCode() != "UPSTREAM_UNAVAILABLE" || !evs[0].End {
		t.Errorf("got %+v, want one final ERROR UPSTREAM_UNAVAILABLE", evs)
	}
}

func TestAnUnknownJobEndsInERRORNotFoundAtOnce(t *testing.T) {
	b := newScriptedBackend(t)
	h, _ := newTestHub(t, b, Config{})
	s := h.Subscribe("o", "c", 0, nil)
	defer s.Close()
	b.scripts <- status(http.StatusNotFound)
	evs := drainAll(t, s)
	if len(evs) != 1 || evs[0].ErrorCode() != "NOT_FOUND" || len(b.opens) != 1 {
		t.Errorf("got %+v after %d opens, want one ERROR NOT_FOUND and no retry", evs, len(b.opens))
	}
}

func TestALateSubscriberGetsTheLatestSnapshotAtOnceFromTheSameUpstream(t *testing.T) {
	b := newScriptedBackend(t)
	h, c := newTestHub(t, b, Config{})
	first := h.Subscribe("o", "c", 0, nil)
	defer first.Close()
	b.scripts <- stream(snapshot(7, "IN_PROGRESS"))
	<-first.Ready()

	late := h.Subscribe("o", "c", 0, nil)
	defer late.Close()
	evs, ended := late.Drain()
	if ended || len(evs) != 1 || evs[0].Seq != 7 {
		t.Errorf("late subscriber got %+v (ended %v), want the snapshot seq 7 at once", evs, ended)
	}
	if n := c.opened.Load(); n != 1 {
		t.Errorf("%d upstreams for two subscribers, want 1", n)
	}
	if other := h.Subscribe("someone-else", "c", 0, nil); other.up == first.up {
		t.Error("another owner joined this owner's upstream")
	} else {
		other.Close()
	}
}

func TestAnUpstreamLingersAfterItsLastSubscriberForAReload(t *testing.T) {
	b := newScriptedBackend(t)
	h, c := newTestHub(t, b, Config{Linger: time.Hour})
	s := h.Subscribe("o", "c", 0, nil)
	s.Close()
	again := h.Subscribe("o", "c", 0, nil) // the reloaded page
	defer again.Close()
	if n := c.opened.Load(); n != 1 {
		t.Errorf("%d upstreams across a reload within the linger, want 1", n)
	}
}

func TestWithoutCoalescingEverySubscriberHasItsOwnUpstream(t *testing.T) {
	b := newScriptedBackend(t)
	h, c := newTestHub(t, b, Config{NoCoalesce: true})
	for range 3 {
		defer h.Subscribe("o", "c", 0, nil).Close()
	}
	if n := c.opened.Load(); n != 3 {
		t.Errorf("%d upstreams for 3 subscribers without coalescing, want 3", n)
	}
}

func TestAStalledUpstreamIsNoticedByItsSilenceAndResumed(t *testing.T) {
	b := newScriptedBackend(t)
	h, _ := newTestHub(t, b, Config{IdleTimeout: 100 * time.Millisecond})
	s := h.Subscribe("o", "c", 0, nil)
	defer s.Close()
	silence := make(chan struct{})
	t.Cleanup(func() { close(silence) })
	b.scripts <- func(w http.ResponseWriter) { // one event, then silence on an open connection
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = w.Write([]byte(snapshot(1, "IN_PROGRESS")))
		w.(http.Flusher).Flush()
		<-silence
	}
	b.scripts <- stream(snapshot(2, "COMPLETED"))
	evs := drainAll(t, s)
	if first, second := <-b.opens, <-b.opens; first != "" || second != "1" {
		t.Errorf("opens with Last-Event-ID %q then %q, want none then 1", first, second)
	}
	if len(evs) != 2 || evs[1].Seq != 2 {
		t.Errorf("got %+v, want seq 1 then the final 2 after the silent connection was dropped", evs)
	}
}
