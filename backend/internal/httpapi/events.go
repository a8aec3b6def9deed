package httpapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	sse "github.com/tmaxmax/go-sse"
)

// events streams a job's snapshots over SSE.
//
// It uses go-sse's Session and Message rather than its Server/Provider: a
// job stream is one topic with one writer (the store), snapshot semantics
// (a watcher re-reads the latest job, so a slow reader skips progress but
// never the terminal event) and an end, which store.Watch gives directly.
func (s *Server) events(c *gin.Context) {
	j, err := s.lookup(c)
	if err != nil {
		s.writeError(c, err)
		return
	}
	lastID := parseLastEventID(c.GetHeader("Last-Event-ID"))
	if j.Status.Terminal() && lastID >= j.Seq {
		// Nothing newer will ever come: 204 tells EventSource to stop.
		c.Status(http.StatusNoContent)
		return
	}
	sess, err := sse.Upgrade(c.Writer, c.Request)
	if err != nil {
		s.writeError(c, fmt.Errorf("upgrade: %w", err))
		return
	}
	h := c.Writer.Header()
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	s.metrics.streamsOpened.Inc()
	s.metrics.streamsActive.Inc()
	defer s.metrics.streamsActive.Dec()

	ctx := c.Request.Context()
	prefix := pathPrefix(c.Request)
	if err := send(sess, &sse.Message{Retry: s.Retry}); err != nil {
		return
	}
	heartbeat := time.NewTimer(s.Heartbeat)
	defer heartbeat.Stop()
	for {
		snap, changed, err := s.Store.Watch(ctx, j.Code)
		if err != nil {
			s.log.Warn("event stream ended: job vanished", "code", j.Code, "err", err)
			return
		}
		if snap.Seq > lastID {
			data, err := json.Marshal(present(snap, prefix))
			if err != nil {
				s.log.Error("encode event", "code", j.Code, "err", err)
				return
			}
			msg := &sse.Message{ID: sse.ID(strconv.FormatInt(snap.Seq, 10))}
			msg.AppendData(string(data))
			if err := send(sess, msg); err != nil {
				return
			}
			s.metrics.eventsSent.Inc()
			lastID = snap.Seq
			heartbeat.Reset(s.Heartbeat)
		}
		if snap.Status.Terminal() {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-s.closing:
			return
		case <-changed:
		case <-heartbeat.C:
			ping := &sse.Message{}
			ping.AppendComment("ping")
			if err := send(sess, ping); err != nil {
				return
			}
			heartbeat.Reset(s.Heartbeat)
		}
	}
}

func send(sess *sse.Session, m *sse.Message) error {
	if err := sess.Send(m); err != nil {
		return fmt.Errorf("send event: %w", err)
	}
	if err := sess.Flush(); err != nil {
		return fmt.Errorf("flush event: %w", err)
	}
	return nil
}

// parseLastEventID reads the seq a reconnecting client has seen. Ids are
// decimal seqs; anything else is treated as absent (0), as the spec asks
// of a value the server cannot use.
func parseLastEventID(h string) int64 {
	if len(h) == 0 || len(h) > 19 {
		return 0
	}
	n, err := strconv.ParseInt(h, 10, 64)
	if err != nil || n < 0 || h[0] == '+' {
		return 0
	}
	return n
}
