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
func (s *Server) sessionEvents(c *gin.Context) {
	sid := s.ensureSession(c)
	if e := s.streams.acquire(sid); e != nil {
		writeError(c, e)
		return
	}
	defer s.streams.release(sid)
	feed := s.feeds.open(sid) // before listing, so no job falls between the two
	defer s.feeds.close(sid, feed)

	jobs, ok := s.sessionJobs(c, sid)
	if !ok {
		return
	}
	s.Metrics.subscribersActive.Inc()
	defer s.Metrics.subscribersActive.Dec()

	w := s.newStreamWriter(c)
	defer w.close()
	ready := make(chan struct{}, 1)
	subs := make(map[string]*relay.Subscription)
	defer func() {
		for _, sub := range subs {
			sub.Close()
		}
	}()
	follow := func(code string, after int64) {
		if _, ok := subs[code]; !ok {
			subs[code] = s.Hub.Subscribe(sid, code, after, ready)
		}
	}
	sent := make(map[string]int64) // the highest seq sent per code
	// catchUp sends the listed snapshots this stream has not sent yet and
	// follows the unfinished jobs it does not follow yet.
	catchUp := func(jobs []listedJob) error {
		for _, j := range jobs {
			if _, followed := subs[j.Code]; followed || j.Seq <= sent[j.Code] {
				continue
			}
			sent[j.Code] = j.Seq
			if err := w.event(j.Code+":"+strconv.FormatInt(j.Seq, 10), relay.Event{Data: j.data}); err != nil {
				return err
			}
			if !j.terminal() {
				follow(j.Code, j.Seq)
			}
		}
		return nil
	}
	if w.ping() != nil || catchUp(jobs) != nil { // ping: open the stream even with no jobs yet
		return
	}
	var resync <-chan time.Time
	if s.MultiplexResync > 0 {
		t := time.NewTicker(s.MultiplexResync)
		defer t.Stop()
		resync = t.C
	}

	ctx := c.Request.Context()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.closing:
			return
		case <-w.quiet():
			if w.ping() != nil {
				return
			}
			continue
		case code := <-feed:
			follow(code, 0)
			continue
		case <-resync:
			jobs, err := s.listJobs(ctx, sid)
			if err != nil {
				s.Logger.Debug("resync a multiplexed stream", "err", err)
				continue
			}
			if catchUp(jobs) != nil {
				return
			}
			continue
		case <-ready:
		}
		for code, sub := range subs {
			evs, ended := sub.Drain()
			for _, ev := range evs {
				id := ""
				if ev.ID != "" {
					id = code + ":" + ev.ID
				}
				if w.event(id, ev) != nil {
					return
				}
				sent[code] = max(sent[code], ev.Seq)
			}
			if ended {
				sub.Close()
				delete(subs, code)
			}
		}
	}
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

// sessionJobs lists the session's jobs; on failure it has answered.
func (s *Server) sessionJobs(c *gin.Context, sid string) ([]listedJob, bool) {
	jobs, err := s.listJobs(c.Request.Context(), sid)
	if err != nil {
		s.Logger.Error("list the session's exports", "err", err)
		writeError(c, errBackend)
		return nil, false
	}
	return jobs, true
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
	m  map[string]map[chan string]struct{}
}

func newFeeds() *feeds { return &feeds{m: make(map[string]map[chan string]struct{})} }

func (f *feeds) open(sid string) chan string {
	ch := make(chan string, 64)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.m[sid] == nil {
		f.m[sid] = make(map[chan string]struct{})
	}
	f.m[sid][ch] = struct{}{}
	return ch
}

func (f *feeds) close(sid string, ch chan string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.m[sid], ch)
	if len(f.m[sid]) == 0 {
		delete(f.m, sid)
	}
}

func (f *feeds) notify(sid, code string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for ch := range f.m[sid] {
		select {
		case ch <- code:
		default: // a stream 64 creates behind will see the job on its next reconnect
		}
	}
}
