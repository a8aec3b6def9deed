package httpapi

import (
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	sse "github.com/tmaxmax/go-sse"

	"github.com/exportstream/exportstream/bff/internal/relay"
)

// events relays one job's stream. Nothing is written until the first event
// or heartbeat, so a job the backend does not know still gets a plain 404
// (EventSource stops), and a resume with nothing newer gets 204.
func (s *Server) events(c *gin.Context, code string) {
	after, err := strconv.ParseInt(c.GetHeader("Last-Event-ID"), 10, 64)
	if err != nil || after < 0 {
		after = 0 // malformed is treated as absent
	}
	sub := s.Hub.Subscribe(code, after)
	defer sub.Close()
	s.Metrics.subscribersActive.Inc()
	defer s.Metrics.subscribersActive.Dec()

	w := streamWriter{c: c, retry: s.Retry}
	heartbeat := time.NewTimer(s.Heartbeat)
	defer heartbeat.Stop()
	ctx := c.Request.Context()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.closing:
			return
		case <-heartbeat.C:
			ping := &sse.Message{}
			ping.AppendComment("ping")
			if w.send(ping) != nil {
				return
			}
			heartbeat.Reset(s.Heartbeat)
			continue
		case <-sub.Ready():
		}
		evs, ended := sub.Drain()
		for _, ev := range evs {
			if !w.started && ev.ErrorCode() == "NOT_FOUND" {
				writeError(c, errNotFound)
				return
			}
			msg := &sse.Message{}
			if ev.ID != "" {
				msg.ID = sse.ID(ev.ID)
			}
			msg.AppendData(ev.Data)
			if w.send(msg) != nil {
				return
			}
			s.Metrics.eventsRelayed.Inc()
			heartbeat.Reset(s.Heartbeat)
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

// streamWriter starts the SSE response lazily: headers and the retry field
// go out with the first message.
type streamWriter struct {
	c       *gin.Context
	retry   time.Duration
	sess    *sse.Session
	started bool
}

func (w *streamWriter) send(m *sse.Message) error {
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
		retry := w.retry + rand.N(w.retry/2+1)
		if err := w.sess.Send(&sse.Message{Retry: retry}); err != nil {
			return err
		}
	}
	if err := w.sess.Send(m); err != nil {
		return err
	}
	return w.sess.Flush()
}

var _ relay.Stats = (*Metrics)(nil)
