package campaign

import (
	"context"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	sse "github.com/tmaxmax/go-sse"
)

// Simulated EventSources. Like a browser's, they reconnect after a drop
// with the last id received as Last-Event-ID, stop on 204 and 404, and
// stop on the BFF's ERROR event (as the client library does). Unlike a
// browser's they also reconnect after a 5xx (the client library's retry
// over a flaky balancer) and give up on a connection silent for three BFF
// heartbeats (a paused BFF sends nothing, not even its heartbeat).
const (
	streamIdle       = 6 * time.Second
	terminalGrace    = 5 * time.Second // the server ends the response after a terminal event within this
	reconnectDelay   = 300 * time.Millisecond
	maxReconnections = 1000
)

// subOpts are a subscriber's seeded choices.
type subOpts struct {
	abandonAfter int           // per-job: close after this many events (0: never)
	reloadAfter  int           // per-job: drop and resume by Last-Event-ID after this many events (0: never)
	abandonIn    time.Duration // multiplexed: close after this long (0: stay to the end)
}

// stream opens path once and hands each event to handle until the
// response ends, handle says stop, ctx ends or nothing (not even a
// heartbeat) arrives for streamIdle. It fills cn.
func (b *browser) stream(ctx context.Context, path, lastID string, cn *Conn, handle func(Event) (stop bool)) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cn.Start, cn.LastEventID = time.Now(), lastID
	defer func() { cn.End = time.Now() }()
	hdr := http.Header{"Accept": {"text/event-stream"}, "Cache-Control": {"no-cache"}}
	if lastID != "" {
		hdr.Set("Last-Event-ID", lastID)
	}
	var idle atomic.Bool
	timer := time.AfterFunc(streamIdle, func() { idle.Store(true); cancel() })
	defer timer.Stop()
	resp, err := b.send(ctx, b.streams, http.MethodGet, path, nil, hdr)
	if err != nil {
		cn.Err, cn.EndReason = err.Error(), "error"
		if idle.Load() {
			cn.EndReason = "idle"
		}
		return
	}
	defer func() { _ = resp.Body.Close() }()
	cn.Status = resp.StatusCode
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error JobError }
		if b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10)); err == nil && json.Unmarshal(b, &e) == nil {
			cn.ErrCode = e.Error.Code
		}
		cn.EndReason = "status"
		return
	}
	timer.Reset(streamIdle)
	body := &idleReader{r: resp.Body, t: timer}
	cn.EndReason = "eof"
	for ev, err := range sse.Read(body, &sse.ReadConfig{MaxEventSize: 1 << 20}) {
		if err != nil {
			cn.Err, cn.EndReason = err.Error(), "error"
			break
		}
		if ev.Data == "" {
			continue // a block with only retry: or id:, which EventSource does not dispatch
		}
		e := Event{At: time.Now(), ID: ev.LastEventID}
		if err := json.Unmarshal([]byte(ev.Data), &e.Job); err != nil {
			e.Job.Status = "UNPARSEABLE: " + ev.Data
		}
		cn.Events = append(cn.Events, e)
		if handle(e) {
			cn.EndReason = "closed"
			return
		}
	}
	switch {
	case idle.Load():
		cn.EndReason = "idle"
	case ctx.Err() != nil && cn.EndReason == "error":
		cn.EndReason = "closed"
	}
}

// idleReader restarts the idle timer whenever bytes arrive.
type idleReader struct {
	r io.Reader
	t *time.Timer
}

func (i *idleReader) Read(p []byte) (int, error) {
	n, err := i.r.Read(p)
	if n > 0 {
		i.t.Reset(streamIdle)
	}
	return n, err
}

// pause waits before a reconnection; false when ctx ended.
func pause(ctx context.Context, d time.Duration) bool {
	return waitUntil(ctx, time.Now().Add(d))
}

// followJob is an EventSource on /api/exports/{code}/events.
func (b *browser) followJob(ctx context.Context, s *Subscriber, o subOpts) {
	s.Start = time.Now()
	defer func() { s.End = time.Now() }()
	f := &jobFollower{b: b, o: o}
	for range maxReconnections {
		if ctx.Err() != nil {
			s.EndReason = EndDeadline
			return
		}
		cn, c := f.connect(ctx, s.Code)
		s.Conns = append(s.Conns, cn)
		if reason := c.endReason(cn); reason != "" {
			s.EndReason = reason
			return
		}
		if !c.reload && !pause(ctx, reconnectDelay+rand.N(reconnectDelay/2)) {
			s.EndReason = EndDeadline
			return
		}
	}
	s.EndReason = EndDeadline
}

// jobFollower is a per-job EventSource's state across its connections.
type jobFollower struct {
	b        *browser
	o        subOpts
	lastID   string // sent as Last-Event-ID on the next connection
	seen     int    // events received, on every connection
	reloaded bool   // dropped once to resume (o.reloadAfter)
}

// jobConn is what one connection of a jobFollower ended on.
type jobConn struct {
	f      *jobFollower
	cancel context.CancelFunc // ends the connection

	terminal, errored, abandoned, reload bool
	openAfter                            atomic.Bool // the response outlived terminalGrace after the terminal event
	grace                                *time.Timer
}

// connect opens one connection on code's events and reads it to its end.
func (f *jobFollower) connect(ctx context.Context, code string) (Conn, *jobConn) {
	connCtx, cancel := context.WithCancel(ctx)
	c := &jobConn{f: f, cancel: cancel}
	cn := Conn{}
	f.b.stream(connCtx, "/api/exports/"+code+"/events", f.lastID, &cn, c.handle)
	if c.grace != nil {
		c.grace.Stop()
	}
	cancel()
	if c.reload {
		cn.EndReason = "reload"
	}
	return cn, c
}

// handle takes one event; true closes the connection.
func (c *jobConn) handle(e Event) bool {
	f := c.f
	f.b.observe(&e.Job)
	if e.Job.Status == StatusError {
		c.errored = true
		return true
	}
	if c.terminal {
		return false // recorded: the checker flags anything after the terminal event
	}
	f.lastID = e.ID
	f.seen++
	if e.Job.Terminal() {
		c.terminal = true
		c.grace = time.AfterFunc(terminalGrace, func() { c.openAfter.Store(true); c.cancel() })
		return false // read on: the server must end the response itself
	}
	if f.o.abandonAfter > 0 && f.seen >= f.o.abandonAfter {
		c.abandoned = true
		return true
	}
	if f.o.reloadAfter > 0 && f.seen >= f.o.reloadAfter && !f.reloaded {
		f.reloaded, c.reload = true, true
		return true
	}
	return false
}

// endReason is why the subscriber ends after this connection, or "" when
// it reconnects.
func (c *jobConn) endReason(cn Conn) string {
	switch {
	case c.terminal && c.openAfter.Load():
		return EndTerminalOpen
	case c.terminal:
		return EndTerminal
	case c.errored:
		return EndErrorEvent
	case c.abandoned:
		return EndAbandoned
	case cn.Status == http.StatusNoContent:
		return EndNoContent
	case cn.Status == http.StatusNotFound:
		return EndNotFound
	case cn.Status >= 400 && cn.Status < 500:
		return EndRefused
	}
	return ""
}

// multiplexed is an open /api/events subscriber the workload can tell, at
// the end, which terminal events it must have seen before it closes.
type multiplexed struct {
	want chan map[string]bool
}

// followAll is an EventSource on /api/events, the tab's one stream.
func (b *browser) followAll(ctx context.Context, s *Subscriber, o subOpts, m *multiplexed) {
	s.Start = time.Now()
	defer func() { s.End = time.Now() }()
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	var (
		mu        sync.Mutex
		seen      = map[string]bool{} // codes seen terminal (or ERROR)
		want      map[string]bool
		satisfied atomic.Bool
		abandoned atomic.Bool
	)
	check := func() { // under mu
		if want == nil {
			return
		}
		for c := range want {
			if !seen[c] {
				return
			}
		}
		satisfied.Store(true)
		stop()
	}
	if o.abandonIn > 0 {
		t := time.AfterFunc(o.abandonIn, func() { abandoned.Store(true); stop() })
		defer t.Stop()
	}
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case w := <-m.want:
			mu.Lock()
			want = w
			check()
			mu.Unlock()
		case <-done:
		}
	}()
	var lastID string
	for range maxReconnections {
		cn := Conn{}
		b.stream(ctx, "/api/events", lastID, &cn, func(e Event) bool {
			b.observe(&e.Job)
			if e.ID != "" {
				lastID = e.ID
			}
			mu.Lock()
			defer mu.Unlock()
			if e.Job.Terminal() || e.Job.Status == StatusError {
				seen[e.Job.Code] = true
			}
			check()
			return false
		})
		s.Conns = append(s.Conns, cn)
		switch {
		case satisfied.Load():
			s.EndReason = EndSatisfied
			return
		case abandoned.Load():
			s.EndReason = EndAbandoned
			return
		case ctx.Err() != nil:
			s.EndReason = EndDeadline
			return
		case cn.Status >= 400 && cn.Status < 500:
			s.EndReason = EndRefused
			return
		}
		if !pause(ctx, reconnectDelay+rand.N(reconnectDelay/2)) {
			break
		}
	}
	switch {
	case satisfied.Load():
		s.EndReason = EndSatisfied
	case abandoned.Load():
		s.EndReason = EndAbandoned
	default:
		s.EndReason = EndDeadline
	}
}
