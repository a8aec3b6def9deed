package relay

// Tests added from mutation testing (make mutation, RELIABILITY.md): each
// names the surviving mutants it kills. They test what a browser or an
// operator of the relay sees, on loopback servers like the rest.

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// rscript answers one event-stream request, seeing the request too.
type rscript = func(http.ResponseWriter, *http.Request)

// newLoopbackBackend is a scripted backend (as newScriptedBackend) whose
// scripts see the request, so they can tell when the relay hangs up; on
// TLS when tls is set.
func newLoopbackBackend(t *testing.T, tls bool) (*scriptedBackend, chan rscript) {
	t.Helper()
	scripts := make(chan rscript, 16)
	b := &scriptedBackend{opens: make(chan string, 16)}
	b.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.opens <- r.Header.Get("Last-Event-ID")
		select {
		case script := <-scripts:
			script(w, r)
		case <-r.Context().Done():
		}
	}))
	if tls {
		b.srv.StartTLS()
	} else {
		b.srv.Start()
	}
	t.Cleanup(b.srv.Close)
	return b, scripts
}

// holdOpen answers with the events, then keeps the stream open until the
// relay hangs up, and closes hungUp then.
func holdOpen(hungUp chan<- struct{}, events ...string) rscript {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for _, ev := range events {
			_, _ = w.Write([]byte(ev))
		}
		w.(http.Flusher).Flush()
		<-r.Context().Done()
		close(hungUp)
	}
}

// plain adapts a script of hub_test.go.
func plain(f func(http.ResponseWriter)) rscript {
	return func(w http.ResponseWriter, _ *http.Request) { f(w) }
}

// waitFor fails t unless ch closes within d.
func waitFor(t *testing.T, ch <-chan struct{}, d time.Duration, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(d):
		t.Fatalf("%s did not happen within %v", what, d)
	}
}

// next waits for s's next batch, up to d.
func next(t *testing.T, s *Subscription, d time.Duration) ([]Event, bool) {
	t.Helper()
	select {
	case <-s.Ready():
	case <-time.After(d):
		t.Fatalf("no event within %v", d)
	}
	return s.Drain()
}

// Kills hub.go:163 (the three mutants of the last-subscriber check):
// a browser leaving does not cut the others off, and the last one leaving
// frees the backend connection.
func TestTheUpstreamOutlivesAnyButTheLastSubscriber(t *testing.T) {
	b, scripts := newLoopbackBackend(t, false)
	h, _ := newTestHub(t, b, Config{})
	first := h.Subscribe("o", "c", 0, nil)
	second := h.Subscribe("o", "c", 0, nil)
	hungUp := make(chan struct{})
	release := make(chan struct{})
	scripts <- func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = w.Write([]byte(snapshot(1, "IN_PROGRESS")))
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done(): // the relay hung up early: the check below fails
			close(hungUp)
			return
		}
		holdOpen(hungUp, snapshot(2, "IN_PROGRESS"))(w, r)
	}
	if evs, _ := next(t, first, 10*time.Second); len(evs) != 1 || evs[0].Seq != 1 {
		t.Fatalf("first subscriber got %+v, want seq 1", evs)
	}
	first.Close()
	close(release)
	for seen := int64(0); seen < 2; {
		evs, ended := next(t, second, 10*time.Second)
		if ended {
			t.Fatalf("the remaining subscriber's stream ended (%+v) when another one left", evs)
		}
		for _, ev := range evs {
			seen = ev.Seq
		}
	}
	second.Close()
	waitFor(t, hungUp, 10*time.Second, "the backend connection closing after the last subscriber left")
}

// Kills hub.go:174 (both mutants; the linger's expiry is otherwise not
// run by any test): once the linger passes with nobody back, the backend
// connection is closed.
func TestAnUpstreamClosesWhenItsLingerPassesWithNobodyBack(t *testing.T) {
	b, scripts := newLoopbackBackend(t, false)
	h, _ := newTestHub(t, b, Config{Linger: 20 * time.Millisecond})
	s := h.Subscribe("o", "c", 0, nil)
	hungUp := make(chan struct{})
	scripts <- holdOpen(hungUp, snapshot(1, "IN_PROGRESS"))
	<-s.Ready()
	s.Close()
	waitFor(t, hungUp, 10*time.Second, "the backend connection closing after the linger")
}

// Kills hub.go:149 (Close stopping a nil linger timer): shutting the hub
// down ends the streams still open, so browsers reconnect elsewhere.
func TestClosingTheHubEndsTheStreamsStillOpen(t *testing.T) {
	b, scripts := newLoopbackBackend(t, false)
	h, _ := newTestHub(t, b, Config{Linger: time.Hour})
	s := h.Subscribe("o", "c", 0, nil)
	defer s.Close()
	lingering := h.Subscribe("o", "other", 0, nil)
	hungUp, hungUp2 := make(chan struct{}), make(chan struct{})
	scripts <- holdOpen(hungUp, snapshot(1, "IN_PROGRESS"))
	scripts <- holdOpen(hungUp2, snapshot(1, "IN_PROGRESS"))
	<-s.Ready()
	<-lingering.Ready()
	lingering.Close() // its upstream lingers, with a timer
	h.Close()
	if evs, ended := s.Drain(); !ended {
		t.Errorf("after Close the stream is not over (%+v)", evs)
	}
	waitFor(t, hungUp, 10*time.Second, "the backend connection closing with the hub")
	waitFor(t, hungUp2, 10*time.Second, "the lingering backend connection closing with the hub")
}

// Kills hub.go:194 (a finished upstream left in the hub): a browser that
// reconnects after the job ended, with the last id, while another tab
// still holds the ended stream, gets a fresh upstream and its end (the
// backend's 204), instead of joining the finished one and hanging.
func TestAReconnectAfterTheStreamEndedGetsAFreshUpstreamAndItsEnd(t *testing.T) {
	b := newScriptedBackend(t)
	h, c := newTestHub(t, b, Config{})
	tab := h.Subscribe("o", "c", 0, nil)
	defer tab.Close() // still open below, as a tab that has not read its end yet
	b.scripts <- stream(snapshot(1, "FAILED"))
	drainAll(t, tab)

	b.scripts <- status(http.StatusNoContent) // nothing newer than 1
	again := h.Subscribe("o", "c", 1, nil)
	defer again.Close()
	var evs []Event
	for ended := false; !ended; { // 3 s, not drainAll's 10: the mutant hangs here
		var batch []Event
		batch, ended = next(t, again, 3*time.Second)
		evs = append(evs, batch...)
	}
	if len(evs) != 0 {
		t.Errorf("a reconnect with the last id got %+v, want the end and nothing else", evs)
	}
	if n := c.opened.Load(); n != 2 {
		t.Errorf("%d upstreams, want a second one for the reconnect", n)
	}
}

// Kills hub.go:260:28 (the next retry's delay subtracted instead of
// added): when the backend asks for a retry later than the give-up
// deadline, browsers get the ERROR at once instead of waiting it out.
func TestARetryLaterThanTheGiveUpDeadlineEndsInERRORAtOnce(t *testing.T) {
	b := newScriptedBackend(t)
	h, _ := newTestHub(t, b, Config{GiveUp: time.Second})
	s := h.Subscribe("o", "c", 0, nil)
	defer s.Close()
	b.scripts <- stream("retry: 60000\n\n" + snapshot(1, "IN_PROGRESS")) // then the connection ends
	start := time.Now()
	var evs []Event
	for ended := false; !ended; {
		var batch []Event
		batch, ended = next(t, s, 5*time.Second)
		evs = append(evs, batch...)
	}
	if len(evs) != 2 || evs[1].ErrorCode() != "UPSTREAM_UNAVAILABLE" {
		t.Errorf("got %+v, want seq 1 then ERROR UPSTREAM_UNAVAILABLE", evs)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("the ERROR came after %v, want it at the drop (the retry, 60 s, is past the 1 s deadline)", took)
	}
}

// Kills subscription.go:57:26 (<= after as <): a browser resuming with
// Last-Event-ID: n does not get event n again.
func TestAResumingSubscriberDoesNotGetTheEventItHadAgain(t *testing.T) {
	b := newScriptedBackend(t)
	h, _ := newTestHub(t, b, Config{})
	s := h.Subscribe("o", "c", 2, nil)
	defer s.Close()
	b.scripts <- stream(snapshot(1, "IN_PROGRESS") + snapshot(2, "IN_PROGRESS") + snapshot(3, "COMPLETED"))
	evs := drainAll(t, s)
	if len(evs) != 1 || evs[0].Seq != 3 {
		t.Errorf("after Last-Event-ID 2 got %+v, want seq 3 only", evs)
	}
}

// Kills subscription.go:46 (both mutants; Notify is otherwise run only by
// the httpapi package's tests): Notify calls at once if something is
// queued already, and otherwise not until something comes.
func TestNotifyIsCalledAtOnceOnlyWhenSomethingIsAlreadyQueued(t *testing.T) {
	b, scripts := newLoopbackBackend(t, false)
	h, _ := newTestHub(t, b, Config{})
	s := h.Subscribe("o", "c", 0, nil)
	defer s.Close()
	woken := make(chan struct{}, 16)
	s.Notify(func() { woken <- struct{}{} })
	if n := len(woken); n != 0 {
		t.Fatalf("Notify called its function %d times with nothing queued, want 0", n)
	}
	scripts <- holdOpen(make(chan struct{}), snapshot(1, "IN_PROGRESS"))
	waitFor(t, chanOf(woken), 10*time.Second, "the first event's notification")

	late := h.Subscribe("o", "c", 0, nil) // gets the latest snapshot queued at once
	defer late.Close()
	lateWoken := make(chan struct{}, 16)
	late.Notify(func() { lateWoken <- struct{}{} })
	if n := len(lateWoken); n != 1 {
		t.Errorf("Notify on a subscription with a snapshot queued called its function %d times, want 1 at once", n)
	}
}

// chanOf closes the returned channel when ch receives.
func chanOf(ch <-chan struct{}) <-chan struct{} {
	done := make(chan struct{})
	go func() { <-ch; close(done) }()
	return done
}

// Kills idle.go:24 (the backend client's own transport replaced by the
// default one): with an idle timeout, the relay still reaches a backend
// through the client it was given (here its TLS roots).
func TestTheIdleTimeoutKeepsTheBackendClientsTransport(t *testing.T) {
	b, scripts := newLoopbackBackend(t, true)
	h, _ := newTestHub(t, b, Config{IdleTimeout: time.Minute, GiveUp: time.Second})
	s := h.Subscribe("o", "c", 0, nil)
	defer s.Close()
	scripts <- plain(stream(snapshot(1, "COMPLETED")))
	evs := drainAll(t, s)
	if len(evs) != 1 || evs[0].Seq != 1 || evs[0].ErrorCode() != "" {
		t.Errorf("got %+v, want the COMPLETED snapshot from the TLS backend", evs)
	}
}

// Kills idle.go:64:7 (the negation: the read that restarts the idle
// clock never does): a backend that keeps sending is never taken for a silent one,
// however long its stream lasts.
func TestAStreamThatKeepsSendingIsNotTakenForASilentOne(t *testing.T) {
	b := newScriptedBackend(t)
	h, _ := newTestHub(t, b, Config{IdleTimeout: 600 * time.Millisecond})
	s := h.Subscribe("o", "c", 0, nil)
	defer s.Close()
	const events = 24
	b.scripts <- func(w http.ResponseWriter) { // 1.4 s of events 60 ms apart: over twice the idle timeout
		w.Header().Set("Content-Type", "text/event-stream")
		tick := time.NewTicker(60 * time.Millisecond)
		defer tick.Stop()
		for seq := 1; seq < events; seq++ {
			_, _ = w.Write([]byte(snapshot(seq, "IN_PROGRESS")))
			w.(http.Flusher).Flush()
			<-tick.C
		}
		_, _ = w.Write([]byte(snapshot(events, "COMPLETED")))
	}
	b.scripts <- stream(snapshot(events, "COMPLETED")) // for a reconnect, so a failure does not hang
	evs := drainAll(t, s)
	if opens := len(b.opens); opens != 1 {
		t.Errorf("%d connections to the backend, want 1: it never went quiet", opens)
	}
	if last := evs[len(evs)-1]; last.Seq != events || !last.End {
		t.Errorf("ended on %+v, want seq %d COMPLETED", last, events)
	}
}

// syncBuffer is a log destination tests read while the hub writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Kills idle.go:67 (the silence reported as the closed connection's own
// error): the operator's log says a stalled upstream was dropped for its
// silence, not for a mysterious closed connection.
func TestAStalledUpstreamIsLoggedAsSilent(t *testing.T) {
	b := newScriptedBackend(t)
	var logs syncBuffer
	cfg := Config{IdleTimeout: 100 * time.Millisecond, Buffer: 64, GiveUp: time.Minute, MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond}
	h := NewHub(b, cfg, &counts{}, slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	t.Cleanup(h.Close)
	s := h.Subscribe("o", "c", 0, nil)
	defer s.Close()
	silence := make(chan struct{})
	t.Cleanup(func() { close(silence) })
	b.scripts <- func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = w.Write([]byte(snapshot(1, "IN_PROGRESS")))
		w.(http.Flusher).Flush()
		<-silence
	}
	b.scripts <- stream(snapshot(2, "COMPLETED"))
	drainAll(t, s)
	if got := logs.String(); !strings.Contains(got, errUpstreamSilent.Error()) {
		t.Errorf("the reconnection log does not name the silence:\n%s", got)
	}
}
