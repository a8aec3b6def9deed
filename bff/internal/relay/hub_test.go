package relay

import (
	"fmt"
	"log/slog"
	"net/http"
	"reflect"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/exportstream/exportstream/bff/internal/backend"
	"github.com/exportstream/exportstream/bff/internal/relay/relaytest"
)

// The hub's tests run it against relaytest's scripted backend through the
// real backend client, so the requests it builds are the ones tested; the
// end-to-end behaviour with the real backend is tested in httpapi.

type counts struct {
	topicsOpened, topicsClosed, connected, disconnected, dropped atomic.Int32
}

func (c *counts) TopicOpened()          { c.topicsOpened.Add(1) }
func (c *counts) TopicClosed()          { c.topicsClosed.Add(1) }
func (c *counts) UpstreamConnected()    { c.connected.Add(1) }
func (c *counts) UpstreamDisconnected() { c.disconnected.Add(1) }
func (c *counts) SnapshotDropped()      { c.dropped.Add(1) }

// upstreamOf is the real backend client of b.
func upstreamOf(t testing.TB, b *relaytest.Backend) *backend.Client {
	t.Helper()
	be, err := backend.New(b.URL, "")
	if err != nil {
		t.Fatal(err)
	}
	return be
}

// newHub starts a hub on b with cfg's zero fields set to quick test values.
func newHub(t testing.TB, b *relaytest.Backend, cfg Config) (*Hub, *counts) {
	t.Helper()
	return newHubOn(t, upstreamOf(t, b), cfg, slog.New(slog.DiscardHandler))
}

// startHub starts a fake backend and, as newHub, a hub on it with cfg.
func startHub(t testing.TB, cfg Config) (*relaytest.Backend, *Hub) {
	t.Helper()
	b := relaytest.New(t)
	h, _ := newHub(t, b, cfg)
	return b, h
}

func newHubOn(t testing.TB, up Upstream, cfg Config, log *slog.Logger) (*Hub, *counts) {
	t.Helper()
	if cfg.Buffer == 0 {
		cfg.Buffer = 64
	}
	if cfg.GiveUp == 0 {
		cfg.GiveUp = time.Minute
	}
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff, cfg.MaxBackoff = time.Millisecond, 5*time.Millisecond
	}
	c := &counts{}
	h := NewHub(up, cfg, c, log)
	t.Cleanup(h.Close)
	return h, c
}

const wait = 10 * time.Second // the most any test waits for what must happen

// eventually polls cond until it holds or wait passes; it reports
// whether it held.
func eventually(cond func() bool) bool {
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(wait)
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline:
			return cond()
		}
	}
	return true
}

// next waits for s's next batch.
func next(t testing.TB, s *Subscription) ([]Event, bool) {
	t.Helper()
	select {
	case <-s.Ready():
	case <-time.After(wait):
		t.Fatalf("no event for %s within %v", s.Code(), wait)
	}
	return s.Drain()
}

// drainAll reads s until its stream is over.
func drainAll(t testing.TB, s *Subscription) []Event {
	t.Helper()
	var all []Event
	for {
		evs, ended := next(t, s)
		all = append(all, evs...)
		if ended {
			return all
		}
	}
}

// readN reads s until it has n events.
func readN(t testing.TB, s *Subscription, n int) []Event {
	t.Helper()
	var all []Event
	for len(all) < n {
		evs, ended := next(t, s)
		all = append(all, evs...)
		if ended && len(all) < n {
			t.Fatalf("%s ended after %d events, want %d: %+v", s.Code(), len(all), n, all)
		}
	}
	return all
}

// waitEnded waits without draining, as a reader that never reads.
func waitEnded(t testing.TB, s *Subscription) {
	t.Helper()
	for {
		select {
		case <-s.Ready():
		case <-time.After(wait):
			t.Fatalf("%s did not end within %v", s.Code(), wait)
		}
		s.mu.Lock()
		ended := s.ended
		s.mu.Unlock()
		if ended {
			return
		}
	}
}

// callsBefore subscribes a job of its own as a barrier and returns the
// calls the backend got before the barrier's PUT. With Config.Calls 1
// calls go out one at a time in the order they were wanted, so a call
// the hub wanted before the barrier is among them (if the stream was
// open when the barrier subscribed: opening one wants calls in no order).
func callsBefore(t testing.TB, h *Hub, b *relaytest.Backend) []Call {
	t.Helper()
	s := h.Subscribe("barrier", "barrier", 0, nil)
	t.Cleanup(s.Close)
	var before []Call
	for {
		c := b.NextCall(t)
		if c.Owner == "barrier" && c.Code == "barrier" {
			return before
		}
		before = append(before, c)
	}
}

// waitSubscribed waits until the hub has o's code subscribed on the
// open stream (its PUT answered), so what it does next is not deferred
// behind that call.
func waitSubscribed(t testing.TB, h *Hub, code string) {
	t.Helper()
	if !eventually(func() bool { return subscribedOn(h, "o", code) }) {
		t.Fatalf("o/%s was not subscribed within %v", code, wait)
	}
}

// subscribedToC starts a hub with one subscriber of o's job c from the
// start, subscribed on the backend's stream, whose connection it returns.
func subscribedToC(t *testing.T) (*relaytest.Backend, *Hub, *Subscription, *relaytest.Conn) {
	t.Helper()
	b, h := startHub(t, Config{Calls: 1})
	s, conn := subscribeTo(t, h, b, "c", 0)
	waitSubscribed(t, h, "c")
	return b, h, s, conn
}

// endedWith sends envs to the one subscriber of o's job c and returns
// what it got until its stream ended. The backend ended the subscription
// itself: the test fails if the hub calls it for c after that (a retry or
// a DELETE).
func endedWith(t *testing.T, envs ...relaytest.Envelope) []Event {
	t.Helper()
	b, h, s, conn := subscribedToC(t)
	conn.Envelope(envs...)
	evs := drainAll(t, s)
	if calls := callsBefore(t, h, b); len(calls) != 0 {
		t.Errorf("calls after the backend ended c: %v, want none", calls)
	}
	return evs
}

// subscribe subscribes to o's job code on h from after and returns once
// the backend b has code's PUT. The subscription closes at the test's
// end, before the hub.
func subscribe(t testing.TB, h *Hub, b *relaytest.Backend, code string, after int64) *Subscription {
	t.Helper()
	s := h.Subscribe("o", code, after, nil)
	t.Cleanup(s.Close)
	b.NextCall(t)
	return s
}

// subscribeTo is subscribe for the hub's first subscriber, and returns
// the connection of the stream the hub opened for it too.
func subscribeTo(t testing.TB, h *Hub, b *relaytest.Backend, code string, after int64) (*Subscription, *relaytest.Conn) {
	t.Helper()
	s := subscribe(t, h, b, code, after)
	return s, b.NextStream(t)
}

// within fails the test with msg unless ch is ready within wait.
func within(t testing.TB, ch <-chan struct{}, msg string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(wait):
		t.Fatal(msg)
	}
}

// Call is relaytest's, for short signatures.
type Call = relaytest.Call

func seqs(evs []Event) []int64 {
	out := make([]int64, len(evs))
	for i, ev := range evs {
		out[i] = ev.Seq
	}
	return out
}

func TestJobsOfManySessionsShareOneStreamAndBrowsersOfOneSessionOneSubscription(t *testing.T) {
	const sessions, jobs, tabs = 20, 5, 3
	b, h := startHub(t, Config{Calls: 1})
	for o := range sessions {
		for c := range jobs {
			for range tabs {
				s := h.Subscribe(fmt.Sprintf("session-%d", o), fmt.Sprintf("job-%d-%d", o, c), 0, nil)
				defer s.Close()
			}
		}
	}
	conn := b.NextStream(t)
	var calls []Call
	for range sessions * jobs {
		calls = append(calls, b.NextCall(t))
	}
	// The stream opened after they subscribed: the barrier's PUT comes
	// after every PUT the opening wanted.
	calls = append(calls, callsBefore(t, h, b)...)
	puts := make(map[string]int)
	for _, c := range calls {
		if c.Method != http.MethodPut || c.Stream != conn.ID || !strings.HasPrefix(c.Code, "job-"+strings.TrimPrefix(c.Owner, "session-")+"-") {
			t.Errorf("unexpected call %v", c)
		}
		puts[c.Owner+"/"+c.Code]++
	}
	if len(calls) != sessions*jobs || len(puts) != sessions*jobs {
		t.Errorf("%d calls for %d distinct jobs, want one PUT for each of the %d jobs (%d tabs each)", len(calls), len(puts), sessions*jobs, tabs)
	}
	if n := len(b.Attempts()); n != 1 {
		t.Errorf("%d stream connections for %d sessions, want 1", n, sessions)
	}
}

func TestALateSubscriberGetsTheLatestSnapshotAtOnceWithoutANewSubscription(t *testing.T) {
	b, h := startHub(t, Config{Calls: 1})
	first := h.Subscribe("o", "c", 0, nil)
	defer first.Close()
	conn := b.NextStream(t)
	if c := b.NextCall(t); c.Method != http.MethodPut || c.Owner != "o" || c.Code != "c" || c.After != 0 {
		t.Fatalf("first call %v, want PUT o/c from 0", c)
	}
	conn.Envelope(relaytest.Snapshot("o", "c", 7, "IN_PROGRESS"))
	readN(t, first, 1)

	late := h.Subscribe("o", "c", 0, nil)
	defer late.Close()
	evs, ended := late.Drain()
	if ended || len(evs) != 1 || evs[0].Seq != 7 {
		t.Errorf("late subscriber got %+v (ended %v), want the snapshot seq 7 at once", evs, ended)
	}
	// Another owner's subscription to the same code is its own (the
	// backend checks ownership per subscription): the barrier's PUT comes
	// after it, and nothing came for the late subscriber.
	other := h.Subscribe("someone-else", "c", 0, nil)
	defer other.Close()
	calls := callsBefore(t, h, b)
	if len(calls) != 1 || calls[0].Owner != "someone-else" || calls[0].Method != http.MethodPut {
		t.Errorf("calls after the late subscriber and another owner's: %v; want only the other owner's PUT", calls)
	}
	if evs, _ := other.Drain(); len(evs) != 0 {
		t.Errorf("another owner's subscriber got this owner's %+v", evs)
	}
}

func TestAnEventForAnotherOwnersJobNeverReachesASubscriber(t *testing.T) {
	b, h := startHub(t, Config{})
	mine := h.Subscribe("o", "c", 0, nil)
	defer mine.Close()
	conn := b.NextStream(t)
	conn.Envelope(
		relaytest.Snapshot("intruder", "c", 5, "IN_PROGRESS"),
		relaytest.Snapshot("o", "other-code", 6, "IN_PROGRESS"),
		relaytest.Ended("intruder", "c", "not_found"),
		relaytest.Snapshot("o", "c", 1, "COMPLETED"),
	)
	if evs := drainAll(t, mine); !reflect.DeepEqual(seqs(evs), []int64{1}) || evs[0].ErrorCode() != "" {
		t.Errorf("got %+v, want only its own seq 1", evs)
	}
}

func TestTheLastSubscriberLeavingUnsubscribesOnlyAfterTheLingerAndOneComingBackSendsNothing(t *testing.T) {
	const linger = 400 * time.Millisecond
	b, h := startHub(t, Config{Linger: linger})
	s := h.Subscribe("o", "c", 0, nil)
	conn := b.NextStream(t)
	b.NextCall(t) // the PUT
	conn.Envelope(relaytest.Snapshot("o", "c", 1, "IN_PROGRESS"))
	readN(t, s, 1)

	left := time.Now()
	s.Close()
	back := h.Subscribe("o", "c", 0, nil) // the reloaded page, within the linger
	if evs, _ := back.Drain(); len(evs) != 1 || evs[0].Seq != 1 {
		t.Errorf("the page back within the linger got %+v, want the snapshot at once", evs)
	}
	<-time.After(linger / 2) // part of the scenario: it stays a while, then leaves for good
	leftAgain := time.Now()
	back.Close()

	c := b.NextCall(t)
	if c.Method != http.MethodDelete || c.Owner != "o" || c.Code != "c" || c.Stream != conn.ID {
		t.Fatalf("the call after the page came back and left is %v, want DELETE o/c (nothing for coming back)", c)
	}
	if took := c.At.Sub(leftAgain); took < linger {
		t.Errorf("DELETE %v after the last subscriber left (%v after the first left), want the linger %v to pass first", took, c.At.Sub(left), linger)
	}
}

func TestTheSubscriptionOutlivesAnyButTheLastSubscriber(t *testing.T) {
	b := relaytest.New(t)
	h, c := newHub(t, b, Config{Calls: 1})
	first := h.Subscribe("o", "c", 0, nil)
	second := h.Subscribe("o", "c", 0, nil)
	conn := b.NextStream(t)
	b.NextCall(t)
	waitSubscribed(t, h, "c")
	conn.Envelope(relaytest.Snapshot("o", "c", 1, "IN_PROGRESS"))
	readN(t, first, 1)
	first.Close()
	conn.Envelope(relaytest.Snapshot("o", "c", 2, "IN_PROGRESS"))
	if evs := readN(t, second, 2); evs[1].Seq != 2 {
		t.Errorf("the remaining subscriber got %+v, want seqs 1 and 2", evs)
	}
	if calls := callsBefore(t, h, b); len(calls) != 0 {
		t.Errorf("calls while a subscriber remains: %v, want none", calls)
	}
	second.Close()
	if call := b.NextCall(t); call.Method != http.MethodDelete || call.Code != "c" {
		t.Errorf("after the last subscriber left: %v, want DELETE o/c", call)
	}
	if !eventually(func() bool { return c.topicsClosed.Load() == 1 }) {
		n := c.topicsClosed.Load()
		t.Errorf("%d topics closed after the DELETE, want 1", n)
	}
}

func TestASlowSubscriberKeepsTheLatestSnapshotsAndAlwaysTheFinalOne(t *testing.T) {
	b := relaytest.New(t)
	h, c := newHub(t, b, Config{Buffer: 4})
	s, conn := subscribeTo(t, h, b, "c", 0)
	var envs []relaytest.Envelope
	for seq := int64(1); seq < 50; seq++ {
		envs = append(envs, relaytest.Snapshot("o", "c", seq, "IN_PROGRESS"))
	}
	conn.Envelope(append(envs, relaytest.Snapshot("o", "c", 50, "COMPLETED"))...)

	waitEnded(t, s)
	evs, _ := s.Drain()
	if !reflect.DeepEqual(seqs(evs), []int64{47, 48, 49, 50}) {
		t.Errorf("a slow subscriber has seqs %v queued, want its buffer of 4 ending with the final 50", seqs(evs))
	}
	if last := evs[len(evs)-1]; !last.End {
		t.Errorf("last event %+v does not end the stream", last)
	}
	if got := c.dropped.Load(); got != 46 {
		t.Errorf("%d snapshots counted as dropped, want 46", got)
	}
}

func TestEndDoneEndsTheSubscriptionAfterTheTerminalEvent(t *testing.T) {
	evs := endedWith(t, relaytest.Snapshot("o", "c", 1, "IN_PROGRESS"), relaytest.Snapshot("o", "c", 2, "COMPLETED"))
	if !reflect.DeepEqual(seqs(evs), []int64{1, 2}) || !evs[1].End || evs[0].End {
		t.Errorf("got %+v, want seq 1 then the final 2", evs)
	}
}

func TestEndDoneAloneEndsTheSubscriptionWithNothing(t *testing.T) {
	b, h := startHub(t, Config{})
	s, conn := subscribeTo(t, h, b, "c", 4) // a browser resuming from the job's last event
	conn.Envelope(relaytest.Ended("o", "c", "done"))
	if evs := drainAll(t, s); len(evs) != 0 {
		t.Errorf("got %+v, want the end and nothing else", evs)
	}
}

// A browser that reconnects with the last id after the job ended, while
// the ended topic is still in the hub (its PUT still in flight), joins it
// and gets its end, not a hang on the finished topic. (When the topic is
// gone it subscribes afresh: TestEndDoneAloneEndsTheSubscriptionWithNothing.)
func TestAReconnectToAJobThatJustEndedGetsItsEnd(t *testing.T) {
	b := relaytest.New(t)
	release := make(chan struct{})
	b.Answer(func(Call) int { <-release; return http.StatusNoContent })
	h, _ := newHub(t, b, Config{})
	defer close(release)
	tab := h.Subscribe("o", "c", 0, nil)
	defer tab.Close() // still open below, as a tab that has not read its end yet
	conn := b.NextStream(t)
	b.NextCall(t) // held: the topic stays in the hub after it ends
	conn.Envelope(relaytest.Snapshot("o", "c", 1, "FAILED"))
	waitEnded(t, tab)

	again := h.Subscribe("o", "c", 1, nil)
	defer again.Close()
	if evs := drainAll(t, again); len(evs) != 0 {
		t.Errorf("a reconnect with the last id got %+v, want the end and nothing else", evs)
	}
	late := h.Subscribe("o", "c", 0, nil)
	defer late.Close()
	if evs := drainAll(t, late); len(evs) != 1 || evs[0].Seq != 1 || !evs[0].End {
		t.Errorf("a new subscriber got %+v, want the final snapshot and the end", evs)
	}
}

func TestEndNotFoundEndsInERRORNotFound(t *testing.T) {
	evs := endedWith(t, relaytest.Ended("o", "c", "not_found"))
	if len(evs) != 1 || evs[0].ErrorCode() != "NOT_FOUND" || !evs[0].End || !strings.Contains(evs[0].Data, `"code":"c","status":"ERROR"`) {
		t.Errorf("got %+v, want one final ERROR NOT_FOUND for c", evs)
	}
}

// Kills the <= after as <: a browser resuming with Last-Event-ID: n does
// not get event n again.
func TestAResumingSubscriberDoesNotGetTheEventItHadAgain(t *testing.T) {
	b, h := startHub(t, Config{})
	s, conn := subscribeTo(t, h, b, "c", 2)
	conn.Envelope(relaytest.Snapshot("o", "c", 1, "IN_PROGRESS"), relaytest.Snapshot("o", "c", 2, "IN_PROGRESS"), relaytest.Snapshot("o", "c", 3, "COMPLETED"))
	if evs := drainAll(t, s); !reflect.DeepEqual(seqs(evs), []int64{3}) {
		t.Errorf("after Last-Event-ID 2 got seqs %v, want 3 only", seqs(evs))
	}
}

// A resubscription that races an event already on the wire gets the
// current snapshot again from the backend (its seq is above the seq the
// call was made from): the topic relays it once. Found by the fault
// campaign (seed 1, topology A: "seq 3 after 3" on one connection).
func TestASnapshotTheBackendSendsTwiceReachesTheSubscriberOnce(t *testing.T) {
	_, _, s, conn := subscribedToC(t)
	conn.Envelope(relaytest.Snapshot("o", "c", 2, "IN_PROGRESS"), relaytest.Snapshot("o", "c", 3, "IN_PROGRESS"),
		relaytest.Snapshot("o", "c", 3, "IN_PROGRESS"), relaytest.Snapshot("o", "c", 2, "IN_PROGRESS"),
		relaytest.Snapshot("o", "c", 4, "COMPLETED"))
	if evs := drainAll(t, s); !reflect.DeepEqual(seqs(evs), []int64{2, 3, 4}) {
		t.Errorf("got seqs %v, want 2, 3, 4 once each", seqs(evs))
	}
}

func TestEventsReachTheSubscriberAsTheBackendSentThem(t *testing.T) {
	job := `{"code":"c","status":"IN_PROGRESS","seq":3}`
	tests := []struct {
		name string
		env  relaytest.Envelope // owner and code are filled in
		want Event
	}{
		{"a snapshot", relaytest.Envelope{ID: new("3"), Data: new(job)}, Event{ID: "3", HasID: true, Data: job, HasData: true, Seq: 3}},
		{"an event type", relaytest.Envelope{Event: "progress", ID: new("4"), Data: new("x")}, Event{Type: "progress", ID: "4", HasID: true, Data: "x", HasData: true, Seq: 4}},
		{"no id field", relaytest.Envelope{Data: new("x")}, Event{Data: "x", HasData: true}},
		{"an empty id, which resets it", relaytest.Envelope{ID: new(""), Data: new("x")}, Event{HasID: true, Data: "x", HasData: true}},
		{"no data field", relaytest.Envelope{ID: new("5")}, Event{ID: "5", HasID: true, Seq: 5}},
		{"empty data", relaytest.Envelope{ID: new("6"), Data: new("")}, Event{ID: "6", HasID: true, HasData: true, Seq: 6}},
		{"a type alone", relaytest.Envelope{Event: "note"}, Event{Type: "note"}},
		{"multi-line data", relaytest.Envelope{ID: new("7"), Data: new("one\ntwo\n\nfour")}, Event{ID: "7", HasID: true, Data: "one\ntwo\n\nfour", HasData: true, Seq: 7}},
		{"an id that is not a number", relaytest.Envelope{ID: new("abc"), Data: new("x")}, Event{ID: "abc", HasID: true, Data: "x", HasData: true}},
		{"the terminal event", relaytest.Envelope{ID: new("8"), Data: new("done"), End: "done"}, Event{ID: "8", HasID: true, Data: "done", HasData: true, Seq: 8, End: true}},
	}
	b, h := startHub(t, Config{})
	conn := b.NextStream(t)
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code := fmt.Sprintf("c%d", i)
			s := subscribe(t, h, b, code, 0)
			env := tt.env
			env.Owner, env.Code = "o", code
			conn.Envelope(env, relaytest.Ended("o", code, "done"))
			if got := drainAll(t, s); len(got) != 1 || got[0] != tt.want {
				t.Errorf("got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestTheHubReadsTheStreamInAnyLegalFraming(t *testing.T) {
	tests := []struct {
		name   string
		pieces func(env string) []string // env: the envelope's JSON
	}{
		{"LF line endings", func(e string) []string { return []string{"data: " + e + "\n\n"} }},
		{"CRLF line endings", func(e string) []string { return []string{"data: " + e + "\r\n\r\n"} }},
		{"CR line endings", func(e string) []string { return []string{"data: " + e + "\r\r"} }},
		{"data without the space", func(e string) []string { return []string{"data:" + e + "\n\n"} }},
		{"the JSON over several data lines", func(e string) []string {
			a, z, _ := strings.Cut(e, ",")
			return []string{"data: " + a + ",\r\ndata: " + z + "\n\n"}
		}},
		{"comments and heartbeats around", func(e string) []string { return []string{": ping\n\n: hello\ndata: " + e + "\n: more\n\n"} }},
		{"an unknown field", func(e string) []string { return []string{"foo: bar\ndata: " + e + "\n\n"} }},
		{"retry with junk", func(e string) []string { return []string{"retry: soon\ndata: " + e + "\n\n"} }},
		{"an id field of the stream itself is not the job's", func(e string) []string { return []string{"id: 99\ndata: " + e + "\n\n"} }},
		{"leading blank lines", func(e string) []string { return []string{"\n\n\ndata: " + e + "\n\n"} }},
		{"an event split across writes", func(e string) []string { return []string{"da", "ta: " + e[:5], e[5:] + "\n", "\n"} }},
		{"a CRLF split between writes", func(e string) []string { return []string{"data: " + e + "\r", "\n\r", "\n"} }},
		{"an event type of a later version is skipped", func(e string) []string {
			return []string{"event: future\ndata: " + strings.Replace(e, `"data":"a"`, `"data":"not this"`, 1) + "\n\ndata: " + e + "\n\n"}
		}},
		{"a malformed envelope is skipped", func(e string) []string { return []string{"data: {\"owner\":\n\ndata: {}\n\ndata: " + e + "\n\n"} }},
	}
	b, h := startHub(t, Config{})
	conn := b.NextStream(t)
	want := Event{ID: "1", HasID: true, Data: "a", HasData: true, Seq: 1}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code := fmt.Sprintf("c%d", i)
			s := subscribe(t, h, b, code, 0)
			env := fmt.Sprintf(`{"owner":"o","code":%q,"id":"1","data":"a"}`, code)
			for _, p := range tt.pieces(env) {
				conn.Send(p)
			}
			conn.Envelope(relaytest.Ended("o", code, "done"))
			if got := drainAll(t, s); len(got) != 1 || got[0] != want {
				t.Errorf("got %+v, want %+v", got, want)
			}
		})
	}
	if n := len(b.Attempts()); n != 1 {
		t.Errorf("%d stream connections, want the one: no framing ends it", n)
	}
}

// Notify calls at once if something is queued already, and otherwise not
// until something comes.
func TestNotifyIsCalledAtOnceOnlyWhenSomethingIsAlreadyQueued(t *testing.T) {
	b, h := startHub(t, Config{})
	s := h.Subscribe("o", "c", 0, nil)
	defer s.Close()
	woken := make(chan struct{}, 16)
	s.Notify(func() { woken <- struct{}{} })
	if n := len(woken); n != 0 {
		t.Fatalf("Notify called its function %d times with nothing queued, want 0", n)
	}
	conn := b.NextStream(t)
	b.NextCall(t)
	conn.Envelope(relaytest.Snapshot("o", "c", 1, "IN_PROGRESS"))
	within(t, woken, "no notification for the first event")

	late := h.Subscribe("o", "c", 0, nil) // gets the latest snapshot queued at once
	defer late.Close()
	lateWoken := make(chan struct{}, 16)
	late.Notify(func() { lateWoken <- struct{}{} })
	if n := len(lateWoken); n != 1 {
		t.Errorf("Notify on a subscription with a snapshot queued called its function %d times, want 1 at once", n)
	}
}

func TestClosingTheHubEndsEverythingAndLeavesNoGoroutine(t *testing.T) {
	b := relaytest.New(t)
	release := make(chan struct{})
	b.Answer(func(c Call) int {
		if c.Code == "held" {
			<-release // a PUT still in flight when the hub closes
		}
		return http.StatusNoContent
	})
	be := upstreamOf(t, b)
	before := runtime.NumGoroutine()

	h := NewHub(be, Config{Buffer: 4, GiveUp: time.Minute, MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond, Linger: time.Hour}, &counts{}, slog.New(slog.DiscardHandler))
	t.Cleanup(h.Close) // if a check below stops the test first; Close twice is fine
	open := h.Subscribe("o", "open", 0, nil)
	lingering := h.Subscribe("o", "lingering", 0, nil)
	held := h.Subscribe("o", "held", 0, nil)
	conn := b.NextStream(t)
	for range 3 {
		b.NextCall(t)
	}
	conn.Envelope(relaytest.Snapshot("o", "open", 1, "IN_PROGRESS"), relaytest.Snapshot("o", "lingering", 1, "IN_PROGRESS"))
	readN(t, open, 1)
	readN(t, lingering, 1)
	lingering.Close() // it lingers, with a timer

	closed := make(chan struct{})
	go func() { h.Close(); close(closed) }()
	within(t, closed, "Close did not return")
	for _, s := range []*Subscription{open, held} {
		if _, ended := s.Drain(); !ended {
			t.Errorf("after Close the stream of %s is not over", s.Code())
		}
	}
	select {
	case <-conn.Done():
	case <-time.After(wait):
		t.Error("the stream connection is still open after Close")
	}
	close(release)
	be.HTTPClient().CloseIdleConnections()

	if !eventually(func() bool { return runtime.NumGoroutine() <= before }) {
		n := runtime.NumGoroutine()
		buf := make([]byte, 1<<20)
		t.Errorf("%d goroutines after Close, %d before the hub:\n%s", n, before, buf[:runtime.Stack(buf, true)])
	}
}
