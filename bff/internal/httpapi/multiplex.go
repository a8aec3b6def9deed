package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/exportstream/exportstream/bff/internal/relay"
	"github.com/exportstream/exportstream/bff/internal/stream"
	"github.com/exportstream/exportstream/internal/service"
)

// sessionEvents is GET /api/events: one stream per tab carrying every job
// of the session, so a page with many exports needs one connection, not
// one per export (browsers allow six per origin on HTTP/1.1).
//
// On every connect, fresh or resumed, it first sends the current snapshot
// of each of the session's jobs, then every change of the unfinished ones,
// including jobs created later. Snapshots are idempotent (clients keep the
// highest seq per code), so resuming needs no replay log: the ids,
// "<code>:<seq>", are informative and Last-Event-ID is not needed to be
// correct. The stream does not end when a job does.
//
// Jobs created through this BFF are joined at once. Behind several BFFs a
// job created through another instance is found by re-listing the
// session's jobs every MultiplexResync (and on the tab's next reconnect).
func (s *Server) sessionEvents(c *gin.Context) error {
	sid, err := s.sessionFor(c)
	if err != nil {
		return err
	}
	fault, err := s.parseFault(c)
	if err != nil {
		return err
	}
	addr := s.clientAddress(c)
	if err := s.streams.acquire(sid, addr); err != nil {
		return err
	}
	m := &sessionStream{s: s, sid: sid, addr: addr, subs: make(map[string]*relay.Subscription), sent: make(map[string]int64)}
	m.feed = s.feeds.open(sid, m.join) // before listing, so no job falls between the two
	s.Metrics.subscribersActive.Inc()
	s.Metrics.sessionStreams.Inc()
	opened := false
	defer func() {
		if !opened {
			m.Closed()
		}
	}()
	jobs, err := s.listJobs(c.Request.Context(), sid)
	if err != nil {
		return fmt.Errorf("%w: list the session's exports: %w", errBackend, err)
	}
	m.listed = jobs
	// The ping opens the stream even when the session has no jobs yet.
	if err := s.openStream(c, stream.AppendPing(s.streamHead(c)), m.withFault(fault)); err != nil {
		return err
	}
	opened = true
	return nil
}

// sessionStream is one tab's stream of all its session's jobs.
type sessionStream struct {
	s    *Server
	sid  string
	addr string // the client address the stream is counted on
	feed *feed

	mu     sync.Mutex
	wake   func()
	subs   map[string]*relay.Subscription // the unfinished jobs followed
	sent   map[string]int64               // the highest seq sent per code
	listed []listedJob                    // snapshots to catch up on: the latest listing not sent yet
	joined []string                       // jobs the session created through this BFF since
	closed bool
}

func (m *sessionStream) Start(wake func()) {
	m.mu.Lock()
	m.wake = wake
	m.mu.Unlock()
	m.s.resyncs.add(m)
}

func (m *sessionStream) Fill(buf []byte) ([]byte, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	// Listed snapshots this stream has not sent yet, and the unfinished
	// jobs among them it does not follow yet.
	for _, j := range m.listed {
		if _, followed := m.subs[j.Code]; followed || j.Seq <= m.sent[j.Code] {
			continue
		}
		m.sent[j.Code] = j.Seq
		buf = stream.AppendEvent(buf, j.Code+":"+strconv.FormatInt(j.Seq, 10), j.data)
		n++
		if !j.terminal() {
			m.follow(j.Code, j.Seq)
		}
	}
	m.listed = nil
	// A job joined after a listing sent it (its create's answer came back
	// late) is followed from what was sent, and nothing at or below that
	// is sent again: a terminal snapshot twice on one stream would make a
	// client that acts on it (a download) act twice.
	for _, code := range m.joined {
		m.follow(code, m.sent[code])
	}
	m.joined = m.joined[:0]
	cut := false
	for code, sub := range m.subs {
		evs, ended := sub.Drain()
		for _, ev := range evs {
			if !ev.HasData || (ev.Seq > 0 && ev.Seq <= m.sent[code]) {
				continue
			}
			id := ""
			if ev.ID != "" {
				id = code + ":" + ev.ID
			}
			buf = stream.AppendEvent(buf, id, ev.Data)
			m.sent[code] = max(m.sent[code], ev.Seq)
			n++
			// dropStreamAt: the tab's stream ends after this event; the
			// browser reconnects and gets every job's snapshot again.
			cut = cut || ev.Cut
		}
		if ended {
			sub.Close()
			delete(m.subs, code)
		}
	}
	m.s.Metrics.eventsRelayed.Add(float64(n))
	return buf, cut // the stream does not end when a job does
}

func (m *sessionStream) follow(code string, after int64) {
	if _, ok := m.subs[code]; !ok {
		m.subs[code] = m.s.Hub.Subscribe(m.sid, code, after, m.wake)
	}
}

// join follows a job the session just created through this BFF.
func (m *sessionStream) join(code string) {
	m.mu.Lock()
	if m.closed || len(m.joined) >= maxJoined {
		m.mu.Unlock()
		return
	}
	m.joined = append(m.joined, code)
	wake := m.wake
	m.mu.Unlock()
	if wake != nil {
		wake()
	}
}

// maxJoined bounds the jobs waiting to be joined by a stream that is not
// being written (its browser stopped reading); past it, the next resync
// or reconnect finds them.
const maxJoined = 64

// relist catches up with the session's jobs as the backend lists them.
func (m *sessionStream) relist(ctx context.Context) {
	jobs, err := m.s.listJobs(ctx, m.sid)
	if err != nil {
		m.s.Logger.Debug("resync a multiplexed stream", "err", err)
		return
	}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return
	}
	// The newest listing replaces one not sent yet (the browser stopped
	// reading): its snapshots are newer, and appending would grow the
	// stream's memory by a whole listing every resync.
	m.listed = jobs
	wake := m.wake
	m.mu.Unlock()
	wake()
}

func (m *sessionStream) Closed() {
	m.mu.Lock()
	m.closed = true
	for _, sub := range m.subs {
		sub.Close()
	}
	clear(m.subs)
	m.mu.Unlock()
	m.s.resyncs.remove(m)
	m.s.feeds.close(m.sid, m.feed)
	m.s.streams.release(m.sid, m.addr)
	m.s.Metrics.subscribersActive.Dec()
}

// listedJob is a job from the backend's list, kept as the bytes it sent.
type listedJob struct {
	Code   string `json:"code"`
	Seq    int64  `json:"seq"`
	Status string `json:"status"`
	data   string
}

func (j listedJob) terminal() bool {
	return j.Status == "COMPLETED" || j.Status == "FAILED" || j.Status == "CANCELLED"
}

// listJobs asks the backend for the session's jobs, kept as it sent them.
func (s *Server) listJobs(ctx context.Context, sid string) ([]listedJob, error) {
	resp, err := s.Backend.Do(ctx, http.MethodGet, "/v1/exports", sid, nil, nil)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("list exports: backend answered %d", resp.StatusCode)
	}
	var list struct {
		Exports []json.RawMessage `json:"exports"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&list); err != nil {
		return nil, fmt.Errorf("list exports: %w", err)
	}
	jobs := make([]listedJob, 0, len(list.Exports))
	for _, raw := range list.Exports {
		var j listedJob
		var compact bytes.Buffer
		if json.Unmarshal(raw, &j) != nil || json.Compact(&compact, raw) != nil {
			continue
		}
		j.data = compact.String()
		jobs = append(jobs, j)
	}
	return jobs, nil
}

// feeds tells a session's open /api/events streams about jobs the session
// creates after they opened.
type feeds struct {
	mu sync.Mutex
	m  map[string]map[*feed]struct{}
}

type feed struct{ join func(code string) }

func newFeeds() *feeds { return &feeds{m: make(map[string]map[*feed]struct{})} }

func (f *feeds) open(sid string, join func(code string)) *feed {
	fd := &feed{join: join}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.m[sid] == nil {
		f.m[sid] = make(map[*feed]struct{})
	}
	f.m[sid][fd] = struct{}{}
	return fd
}

func (f *feeds) close(sid string, fd *feed) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.m[sid], fd)
	if len(f.m[sid]) == 0 {
		delete(f.m, sid)
	}
}

func (f *feeds) notify(sid, code string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for fd := range f.m[sid] {
		fd.join(code)
	}
}

// resyncs re-lists the jobs of every open multiplexed stream every
// MultiplexResync, a few streams at a time, so that jobs created through
// another BFF instance are joined.
type resyncs struct {
	mu      sync.Mutex
	streams map[*sessionStream]struct{}
}

func (r *resyncs) add(m *sessionStream) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.streams[m] = struct{}{}
}

func (r *resyncs) remove(m *sessionStream) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.streams, m)
}

// run relists every stream once per interval until ctx is done.
func (r *resyncs) run(ctx context.Context, interval time.Duration) {
	service.Every(ctx, interval, func(time.Time) { r.relistAll(ctx, interval) })
}

// relistAll relists every open stream, a few at a time, each within interval.
func (r *resyncs) relistAll(ctx context.Context, interval time.Duration) {
	const concurrent = 4
	r.mu.Lock()
	batch := make([]*sessionStream, 0, len(r.streams))
	for m := range r.streams {
		batch = append(batch, m)
	}
	r.mu.Unlock()
	var wg sync.WaitGroup
	sem := make(chan struct{}, concurrent)
	for _, m := range batch {
		if ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			lctx, cancel := context.WithTimeout(ctx, interval)
			defer cancel()
			m.relist(lctx)
		})
	}
	wg.Wait()
}
