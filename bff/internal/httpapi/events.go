package httpapi

import (
	"errors"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	sse "github.com/tmaxmax/go-sse"

	"github.com/exportstream/exportstream/bff/internal/relay"
)

// events relays one job's stream. Nothing is written until the first event
// or heartbeat, so a job the backend does not know (or another session's)
// still gets a plain 404 (EventSource stops), and a resume with nothing
// newer gets 204.
func (s *Server) events(c *gin.Context, code string) {
	sid, ok := s.requireSession(c)
	if !ok {
		return
	}
	after, err := strconv.ParseInt(c.GetHeader("Last-Event-ID"), 10, 64)
	if err != nil || after < 0 {
		after = 0 // malformed is treated as absent
	}
	if e := s.streams.acquire(sid); e != nil {
		writeError(c, e)
		return
	}
	defer s.streams.release(sid)
	sub := s.Hub.Subscribe(sid, code, after, nil)
	defer sub.Close()
	s.Metrics.subscribersActive.Inc()
	defer s.Metrics.subscribersActive.Dec()

	w := s.newStreamWriter(c)
	defer w.close()
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
		case <-sub.Ready():
		}
		evs, ended := sub.Drain()
		for _, ev := range evs {
			if !w.started && ev.ErrorCode() == "NOT_FOUND" {
				writeError(c, errNotFound)
				return
			}
			if w.event(ev.ID, ev) != nil {
				return
			}
		}
		if ended {
			if !w.started {
				// Nothing newer than Last-Event-ID will come: stop the browser.
				c.Status(http.StatusNoContent)
			}
			return
		}
	}
}

// streamWriter writes one browser's SSE response. It starts the response
// lazily (headers and the retry field go out with the first message),
// bounds every write by the write timeout, so a browser that stopped
// reading is cut off instead of holding its goroutine and buffers, and
// tells when the stream has been quiet for a heartbeat interval.
type streamWriter struct {
	s         *Server
	c         *gin.Context
	rc        *http.ResponseController
	sess      *sse.Session
	started   bool
	heartbeat *time.Timer // restarted by every write
}

func (s *Server) newStreamWriter(c *gin.Context) *streamWriter {
	return &streamWriter{s: s, c: c, rc: http.NewResponseController(c.Writer), heartbeat: time.NewTimer(s.Heartbeat)}
}

// quiet fires when nothing was written for a heartbeat interval.
func (w *streamWriter) quiet() <-chan time.Time { return w.heartbeat.C }

func (w *streamWriter) close() { w.heartbeat.Stop() }

func (w *streamWriter) event(id string, ev relay.Event) error {
	msg := &sse.Message{}
	if id != "" {
		// The parser never yields an id with a line break; refuse one anyway
		// rather than let it end the stream's framing.
		eid, err := sse.NewID(id)
		if err != nil {
			return err
		}
		msg.ID = eid
	}
	msg.AppendData(ev.Data)
	if err := w.send(msg); err != nil {
		return err
	}
	w.s.Metrics.eventsRelayed.Inc()
	return nil
}

func (w *streamWriter) ping() error {
	ping := &sse.Message{}
	ping.AppendComment("ping")
	return w.send(ping)
}

func (w *streamWriter) send(m *sse.Message) error {
	if w.s.WriteTimeout > 0 {
		_ = w.rc.SetWriteDeadline(time.Now().Add(w.s.WriteTimeout))
	}
	err := w.write(m)
	if err == nil {
		w.heartbeat.Reset(w.s.Heartbeat)
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		w.s.Metrics.slowDisconnects.Inc()
		w.s.Logger.Info("disconnected a browser that stopped reading", "path", w.c.Request.URL.Path)
	}
	return err
}

func (w *streamWriter) write(m *sse.Message) error {
	if !w.started {
		sess, err := sse.Upgrade(w.c.Writer, w.c.Request)
		if err != nil {
			return err
		}
		h := w.c.Writer.Header()
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Accel-Buffering", "no")
		w.sess, w.started = sess, true
		// Jitter the advertised retry so a crowd of browsers that lost this
		// instance do not all come back in the same millisecond.
		retry := w.s.Retry + rand.N(w.s.Retry/2+1)
		if err := w.sess.Send(&sse.Message{Retry: retry}); err != nil {
			return err
		}
	}
	if err := w.sess.Send(m); err != nil {
		return err
	}
	return w.sess.Flush()
}
