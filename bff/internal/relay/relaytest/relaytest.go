// Package relaytest is a scripted fake of the backend's multiplexed event
// stream, for the relay's and the BFF's tests. Each GET /v1/events is
// answered with a `stream` event naming a fresh id and handed to the test
// as a Conn, on which it writes what it likes (envelopes, raw bytes,
// heartbeats) and which it can drop. Subscription calls
// (PUT/DELETE /v1/events/{stream}/subscriptions/{code}) are recorded for
// the test to read in order and answered by a function it sets (204 by
// default). Point the real backend client (bff/internal/backend) at URL,
// so the requests the relay builds are tested too.
//
// Waiting methods (NextStream, NextCall, WaitAttempts) fail the test after
// Timeout; call them from the test's goroutine.
package relaytest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/exportstream/exportstream/internal/envelope"
)

// Timeout bounds every wait of this package.
var Timeout = 10 * time.Second

// Backend is the fake backend.
type Backend struct {
	URL string
	srv *httptest.Server

	mu       sync.Mutex
	changed  chan struct{} // closed and replaced at every change below
	answer   func(Call) int
	refuse   int // the status stream requests get; 0: accepted
	attempts []time.Time
	conns    []*Conn
	calls    []Call
	nextConn int // conns handed out by NextStream
	nextCall int // calls handed out by NextCall
}

// Call is one subscription call as the backend received it.
type Call struct {
	Method string // PUT or DELETE
	Stream string
	Owner  string // X-Export-Owner
	Code   string
	After  int64 // Last-Event-ID; 0 when absent
	At     time.Time
}

func (c Call) String() string {
	return fmt.Sprintf("%s %s/%s/%s after %d", c.Method, c.Stream, c.Owner, c.Code, c.After)
}

// New starts a fake backend on loopback; the test's cleanup stops it.
func New(t testing.TB) *Backend { return start(t, false) }

// NewTLS is New over TLS; Client trusts its certificate.
func NewTLS(t testing.TB) *Backend { return start(t, true) }

func start(t testing.TB, tls bool) *Backend {
	t.Helper()
	b := &Backend{changed: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/events", b.serveStream)
	mux.HandleFunc("PUT /v1/events/{stream}/subscriptions/{code}", b.serveCall)
	mux.HandleFunc("DELETE /v1/events/{stream}/subscriptions/{code}", b.serveCall)
	b.srv = httptest.NewUnstartedServer(mux)
	if tls {
		b.srv.StartTLS()
	} else {
		b.srv.Start()
	}
	b.URL = b.srv.URL
	t.Cleanup(func() {
		b.srv.CloseClientConnections() // streams still open would hold Close
		b.srv.Close()
	})
	return b
}

// Client is an HTTP client for the backend (with its TLS certificate).
func (b *Backend) Client() *http.Client { return b.srv.Client() }

// Close stops the backend: nothing listens on URL any more.
func (b *Backend) Close() {
	b.srv.CloseClientConnections()
	b.srv.Close()
}

// Answer sets how subscription calls are answered: f returns the status
// (it may block, and is called concurrently). nil answers 204.
func (b *Backend) Answer(f func(Call) int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.answer = f
}

// RefuseStreams answers stream requests with status from now on; 0
// accepts them again.
func (b *Backend) RefuseStreams(status int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refuse = status
}

// NextStream waits for the next accepted stream connection.
func (b *Backend) NextStream(t testing.TB) *Conn {
	t.Helper()
	return next(t, b, "a stream connection", &b.conns, &b.nextConn)
}

// NextCall waits for the next subscription call.
func (b *Backend) NextCall(t testing.TB) Call {
	t.Helper()
	return next(t, b, "a subscription call", &b.calls, &b.nextCall)
}

// next waits until b has recorded one more of what than it handed out
// (*handed of *items, both under b.mu), and hands that one out.
func next[T any](t testing.TB, b *Backend, what string, items *[]T, handed *int) T {
	t.Helper()
	var item T
	b.wait(t, what, func() bool {
		if *handed < len(*items) {
			item = (*items)[*handed]
			*handed++
			return true
		}
		return false
	})
	return item
}

// Calls returns every subscription call so far, in the order they came.
func (b *Backend) Calls() []Call {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]Call(nil), b.calls...)
}

// Attempts returns when each stream request so far came, refused or not.
func (b *Backend) Attempts() []time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]time.Time(nil), b.attempts...)
}

// WaitAttempts waits until n stream requests came and returns their times.
func (b *Backend) WaitAttempts(t testing.TB, n int) []time.Time {
	t.Helper()
	var at []time.Time
	b.wait(t, fmt.Sprintf("%d stream requests", n), func() bool {
		if len(b.attempts) >= n {
			at = append(at, b.attempts[:n]...)
			return true
		}
		return false
	})
	return at
}

// wait polls done (under b.mu) at every change until it holds.
func (b *Backend) wait(t testing.TB, what string, done func() bool) {
	t.Helper()
	deadline := time.NewTimer(Timeout)
	defer deadline.Stop()
	for {
		b.mu.Lock()
		ok, changed := done(), b.changed
		b.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("relaytest: waited %v for %s", Timeout, what)
		}
	}
}

// changedLocked wakes the waiters; b.mu is held.
func (b *Backend) changedLocked() {
	close(b.changed)
	b.changed = make(chan struct{})
}

func (b *Backend) serveStream(w http.ResponseWriter, r *http.Request) {
	b.mu.Lock()
	b.attempts = append(b.attempts, time.Now())
	refuse := b.refuse
	id := "s" + strconv.Itoa(len(b.attempts))
	b.changedLocked()
	b.mu.Unlock()
	if refuse != 0 {
		w.WriteHeader(refuse)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	c := &Conn{ID: id, w: w, rc: http.NewResponseController(w), drop: make(chan struct{}), done: make(chan struct{})}
	c.Send("retry: 10\n\nevent: stream\ndata: {\"stream\":\"" + id + "\"}\n\n")

	b.mu.Lock()
	b.conns = append(b.conns, c)
	b.changedLocked()
	b.mu.Unlock()

	var dropped bool
	select {
	case <-c.drop:
		dropped = true
	case <-r.Context().Done():
	}
	c.mu.Lock()
	c.over = true
	c.mu.Unlock()
	close(c.done)
	if dropped {
		panic(http.ErrAbortHandler) // cut the connection, no clean end of the body
	}
}

func (b *Backend) serveCall(w http.ResponseWriter, r *http.Request) {
	call := Call{
		Method: r.Method, Stream: r.PathValue("stream"), Owner: r.Header.Get("X-Export-Owner"),
		Code: r.PathValue("code"), At: time.Now(),
	}
	if v := r.Header.Get("Last-Event-ID"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			http.Error(w, "bad Last-Event-ID", http.StatusBadRequest)
			return
		}
		call.After = n
	}
	b.mu.Lock()
	b.calls = append(b.calls, call)
	answer := b.answer
	b.changedLocked()
	b.mu.Unlock()
	status := http.StatusNoContent
	if answer != nil {
		status = answer(call)
	}
	w.WriteHeader(status)
}

// Conn is one open stream connection.
type Conn struct {
	ID string // the stream id it announced

	w    http.ResponseWriter
	rc   *http.ResponseController
	drop chan struct{}
	done chan struct{}

	mu       sync.Mutex
	over     bool
	dropOnce sync.Once
}

// Send writes raw bytes on the stream and flushes them; false if the
// connection is over.
func (c *Conn) Send(raw string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.over {
		return false
	}
	if _, err := c.w.Write([]byte(raw)); err != nil {
		return false
	}
	return c.rc.Flush() == nil
}

// Envelope sends envs in one write.
func (c *Conn) Envelope(envs ...Envelope) bool { return c.Send(Encode(envs...)) }

// Ping sends a heartbeat comment.
func (c *Conn) Ping() bool { return c.Send(": ping\n\n") }

// Drop cuts the connection, as a backend that died, and returns when it
// is over.
func (c *Conn) Drop() {
	c.dropOnce.Do(func() { close(c.drop) })
	<-c.done
}

// Done is closed when the connection is over: dropped, or the client hung up.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Envelope is one event of the multiplexed stream (the wire format's own
// type): an event of owner's job code, or the end of that code's stream.
type Envelope = envelope.Envelope

// Encode returns envs as SSE events of the multiplexed stream.
func Encode(envs ...Envelope) string {
	var sb strings.Builder
	for _, e := range envs {
		b, err := json.Marshal(e)
		if err != nil {
			panic(err) // strings only: cannot happen
		}
		sb.WriteString("data: ")
		sb.Write(b)
		sb.WriteString("\n\n")
	}
	return sb.String()
}

// Snapshot is an envelope carrying a job snapshot with id seq; a terminal
// status (COMPLETED, FAILED, CANCELLED) ends the code's stream with it.
func Snapshot(owner, code string, seq int64, status string) Envelope {
	id := strconv.FormatInt(seq, 10)
	data := fmt.Sprintf(`{"code":%q,"status":%q,"seq":%d}`, code, status, seq)
	e := Envelope{Owner: owner, Code: code, ID: &id, Data: &data}
	switch status {
	case "COMPLETED", "FAILED", "CANCELLED":
		e.End = "done"
	}
	return e
}

// Ended is the envelope that ends a code's stream with nothing more:
// end "done" or "not_found".
func Ended(owner, code, end string) Envelope {
	return Envelope{Owner: owner, Code: code, End: end}
}
