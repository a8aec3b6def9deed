package httpapi

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/exportstream/exportstream/bff/internal/relay"
	"github.com/exportstream/exportstream/bff/internal/stream"
)

// events relays one job's stream. The handler waits for the first event
// (or a heartbeat interval) before answering, so a job the backend does
// not know (or another session's) still gets a plain 404 (EventSource
// stops) and a resume with nothing newer gets 204; then it hands the
// connection to the stream pool and returns.
func (s *Server) events(c *gin.Context, code string) error {
	sid, err := requireSession(c)
	if err != nil {
		return err
	}
	fault, err := s.parseFault(c)
	if err != nil {
		return err
	}
	after, err := strconv.ParseInt(c.GetHeader("Last-Event-ID"), 10, 64)
	if err != nil || after < 0 {
		after = 0 // malformed is treated as absent
	}
	addr := s.clientAddress(c)
	if err := s.streams.acquire(sid, addr); err != nil {
		return err
	}
	src := &jobStream{s: s, sid: sid, addr: addr, sub: s.Hub.Subscribe(sid, code, after, nil), lastID: c.GetHeader("Last-Event-ID")}
	s.Metrics.subscribersActive.Inc()
	opened := false
	defer func() {
		if !opened {
			src.Closed()
		}
	}()

	wait := time.NewTimer(s.Heartbeat)
	defer wait.Stop()
	var first []byte
	select {
	case <-c.Request.Context().Done():
		return nil // the browser left: nobody to answer
	case <-s.closing:
		return errShuttingDown
	case <-wait.C:
		first = stream.AppendPing(first) // nothing yet: open the stream with a heartbeat
	case <-src.sub.Ready():
		evs, ended := src.sub.Drain()
		if len(evs) > 0 && evs[0].ErrorCode() == "NOT_FOUND" {
			return errNotFound
		}
		if ended && len(evs) == 0 {
			// Nothing newer than Last-Event-ID will come: stop the browser.
			c.Status(http.StatusNoContent)
			return nil
		}
		first = src.append(first, evs)
	}
	if err := s.openStream(c, append(s.streamHead(c), first...), src.withFault(fault, code)); err != nil {
		return err
	}
	opened = true
	return nil
}

// jobStream is one browser's stream of one job: the subscription's events
// as the backend sent them, ids unchanged.
//
// Every event with data carries the id a spec-following reader would give
// it, the last id set (or the Last-Event-ID the browser came back with),
// even when the backend's event had no id field: a browser dispatches the
// same, and readers that forget an id between events (the eventsource npm
// package resets it on an event without one, and drops an id sent without
// data) get it right too.
type jobStream struct {
	s      *Server
	sid    string
	addr   string // the client address the stream is counted on
	sub    *relay.Subscription
	lastID string // only the stream pool's one writer at a time touches it
	cut    bool   // an event asked to cut the stream (dropStreamAt); same
}

func (j *jobStream) Start(wake func()) { j.sub.Notify(wake) }

func (j *jobStream) Fill(buf []byte) ([]byte, bool) {
	if j.cut {
		return buf, true // cut in the handler's first events: nothing more on this stream
	}
	evs, ended := j.sub.Drain()
	buf = j.append(buf, evs)
	return buf, ended || j.cut
}

func (j *jobStream) append(buf []byte, evs []relay.Event) []byte {
	n := 0
	for _, ev := range evs {
		if ev.HasID && !strings.ContainsRune(ev.ID, 0) { // an id with NUL is ignored
			j.lastID = ev.ID
		}
		buf = stream.AppendFrame(buf, stream.Frame{Type: ev.Type, ID: j.lastID, HasID: ev.HasID || ev.HasData, Data: ev.Data, HasData: ev.HasData})
		n++
		if ev.Cut {
			j.cut = true
			break // what follows comes on the browser's resumed stream
		}
	}
	j.s.Metrics.eventsRelayed.Add(float64(n))
	return buf
}

func (j *jobStream) Closed() {
	j.sub.Close()
	j.s.streams.release(j.sid, j.addr)
	j.s.Metrics.subscribersActive.Dec()
}

// streamHead is the response head of an event stream: the headers the
// middleware set, the event-stream ones and a retry field. The retry is
// jittered so a crowd of browsers that lost this instance do not all come
// back in the same millisecond.
func (s *Server) streamHead(c *gin.Context) []byte {
	return stream.Head(c.Writer.Header(), s.Retry+rand.N(s.Retry/2+1))
}

// openStream hands the connection to the stream pool; on an error it did
// not take it (src is then the caller's to close). The pool refuses a new
// stream only before taking the connection (errShuttingDown, answered);
// any other error comes after it took the connection, and ends it.
func (s *Server) openStream(c *gin.Context, head []byte, src stream.Source) error {
	err := s.pool.Open(c.Writer, head, src)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, stream.ErrClosed):
		return fmt.Errorf("%w: %w", errShuttingDown, err)
	default:
		return fmt.Errorf("open an event stream: %w", err)
	}
}
