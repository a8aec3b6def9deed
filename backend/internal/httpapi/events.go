package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	sse "github.com/tmaxmax/go-sse"

	"github.com/exportstream/exportstream/backend/internal/job"
	"github.com/exportstream/exportstream/backend/internal/store"
)

// events streams a job's snapshots over SSE.
//
// It uses go-sse's Session and Message rather than its Server/Provider: a
// job stream is one topic with one writer (the store), snapshot semantics
// (a watcher re-reads the latest job, so a slow reader skips progress but
// never the terminal event) and an end, which store.Follow gives directly.
// Errors before the first event are answered; after it they end the stream
// (handle).
func (s *Server) events(c *gin.Context) error {
	j, err := s.lookup(c)
	if err != nil {
		return err
	}
	lastID := parseLastEventID(c.GetHeader("Last-Event-ID"))
	if j.Status.Terminal() && lastID >= j.Seq {
		// Nothing newer will ever come: 204 tells EventSource to stop.
		c.Status(http.StatusNoContent)
		return nil
	}
	sess, err := upgrade(c)
	if err != nil {
		return err
	}
	s.metrics.streamsOpened.Inc()
	s.metrics.streamsActive.Inc()
	defer s.metrics.streamsActive.Dec()

	ctx := c.Request.Context()
	prefix := pathPrefix(c.Request)
	if err := send(sess, &sse.Message{Retry: s.Retry}); err != nil {
		return err
	}
	heartbeat := time.NewTimer(s.Heartbeat)
	defer heartbeat.Stop()
	// Waiting for the job's next change is where the stream is quiet:
	// heartbeats go out there, and draining ends the stream there.
	wait := func(ctx context.Context, changed <-chan struct{}) error {
		for {
			select {
			case <-changed:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			case <-s.closing:
				return errDraining
			case <-heartbeat.C:
				if err := sendPing(sess); err != nil {
					return err
				}
				heartbeat.Reset(s.Heartbeat)
			}
		}
	}
	progress := -1 // of the last snapshot sent, for the dropStreamAt scenario
	err = store.Follow(ctx, s.Store, j.Code, j.Owner, lastID, wait, func(snap job.Job) error {
		data, err := snapshotData(snap, prefix)
		if err != nil {
			return err
		}
		msg := &sse.Message{ID: sse.ID(strconv.FormatInt(snap.Seq, 10))}
		msg.AppendData(string(data))
		if err := send(sess, msg); err != nil {
			return err
		}
		s.metrics.eventsSent.Inc()
		heartbeat.Reset(s.Heartbeat)
		if job.CutsStream(snap, progress) {
			return errCut
		}
		progress = snap.Progress
		return nil
	})
	if errors.Is(err, errCut) {
		return nil // the response ends here; the reader resumes by Last-Event-ID
	}
	if err != nil {
		return fmt.Errorf("follow export %s: %w", j.Code, err) // job.ErrNotFound: it vanished
	}
	return nil
}

// errCut ends a stream after the snapshot that crosses the export's
// dropStreamAt (a scenario).
var errCut = errors.New("stream cut by the dropStreamAt scenario")

// errDraining ends a stream when the server drains (CloseStreams).
var errDraining = errors.New("server is draining")

// errSend marks a failed write to the client: it has gone, nothing to log.
var errSend = errors.New("client gone")

// snapshotData is the data field of a job's event, on every stream: the
// job JSON with its caller-relative parts (file.url) under prefix.
func snapshotData(j job.Job, prefix string) ([]byte, error) {
	data, err := json.Marshal(present(j, prefix))
	if err != nil {
		return nil, fmt.Errorf("encode event of %s: %w", j.Code, err)
	}
	return data, nil
}

func sendPing(sess *sse.Session) error {
	ping := &sse.Message{}
	ping.AppendComment("ping")
	return send(sess, ping)
}

// upgrade starts an event stream with the headers every one carries
// (docs: "Events on the wire"): no caching, no proxy buffering.
func upgrade(c *gin.Context) (*sse.Session, error) {
	sess, err := sse.Upgrade(c.Writer, c.Request)
	if err != nil {
		return nil, fmt.Errorf("upgrade: %w", err)
	}
	h := c.Writer.Header()
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	return sess, nil
}

func send(sess *sse.Session, m *sse.Message) error {
	if err := sess.Send(m); err != nil {
		return fmt.Errorf("send event: %w (%w)", errSend, err)
	}
	if err := sess.Flush(); err != nil {
		return fmt.Errorf("flush event: %w (%w)", errSend, err)
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
