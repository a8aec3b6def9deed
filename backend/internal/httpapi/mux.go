package httpapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	sse "github.com/tmaxmax/go-sse"

	"github.com/exportstream/exportstream/backend/internal/job"
	"github.com/exportstream/exportstream/internal/envelope"
)

// The multiplexed event stream (GET /v1/events) and its subscription
// calls; package eventmux keeps the streams, docs/multiplexed-stream.md
// describes the protocol.

// maxSubscriptionCode bounds a subscribed code: any string up to it is
// answered on the stream (end not_found if it is no job's code), so a
// stream's memory stays bounded by its subscriptions.
const maxSubscriptionCode = 128

// muxEvents serves one multiplexed stream until the client leaves, the
// server drains or the stream fails.
func (s *Server) muxEvents(c *gin.Context) error {
	if s.draining.Load() {
		return job.ErrUnavailable
	}
	prefix := pathPrefix(c.Request)
	// In Redis mode Open has subscribed the stream's channel: calls made
	// once the caller reads the stream's id reach it.
	stream, err := s.Mux.Open(c, func(j job.Job) ([]byte, error) { return snapshotData(j, prefix) })
	if err != nil {
		return fmt.Errorf("open event stream: %w", err)
	}
	defer stream.Close()
	sess, err := upgrade(c)
	if err != nil {
		return err
	}

	opened, err := json.Marshal(envelope.Opened{Stream: stream.ID()})
	if err != nil {
		return fmt.Errorf("encode the opened event: %w", err)
	}
	first := &sse.Message{Type: sse.Type(envelope.StreamEvent)}
	first.AppendData(string(opened))
	if err := send(sess, &sse.Message{Retry: s.Retry}); err != nil {
		return err
	}
	if err := send(sess, first); err != nil {
		return err
	}
	s.log.Debug("event stream opened", "stream", stream.ID())

	ctx := c.Request.Context()
	heartbeat := time.NewTimer(s.Heartbeat)
	defer heartbeat.Stop()
	var batch []envelope.Envelope
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.closing:
			return nil
		case <-stream.Done():
			return nil // eventmux logged why
		case <-heartbeat.C:
			if err := sendPing(sess); err != nil {
				return err
			}
			heartbeat.Reset(s.Heartbeat)
		case <-stream.Ready():
			batch = stream.Take(batch[:0])
			if len(batch) == 0 {
				continue
			}
			if err := s.writeEnvelopes(sess, batch); err != nil {
				return fmt.Errorf("event stream %s: %w", stream.ID(), err)
			}
			clear(batch) // let the sent data go before the next batch
			heartbeat.Reset(s.Heartbeat)
		}
	}
}

// writeEnvelopes writes a batch, one unnamed event each, and flushes once:
// whatever was pending when the writer woke goes out together.
func (s *Server) writeEnvelopes(sess *sse.Session, batch []envelope.Envelope) error {
	for _, env := range batch {
		data, err := env.Encode()
		if err != nil {
			return err
		}
		msg := &sse.Message{}
		msg.AppendData(string(data))
		if err := sess.Send(msg); err != nil {
			return fmt.Errorf("send event: %w (%w)", errSend, err)
		}
		if env.Data != nil {
			s.metrics.eventsSent.Inc()
		}
	}
	if err := sess.Flush(); err != nil {
		return fmt.Errorf("flush events: %w (%w)", errSend, err)
	}
	return nil
}

// subscriptionCode is the :code of a subscription call, bounded.
func subscriptionCode(c *gin.Context) (string, error) {
	if ownerOf(c) == "" {
		// Subscriptions are per owner and code: without an owner no
		// envelope could say whose it is.
		return "", &apiError{http.StatusBadRequest, "INVALID_OWNER", "X-Export-Owner is required to subscribe"}
	}
	code := c.Param("code")
	if len(code) > maxSubscriptionCode {
		return "", &apiError{http.StatusBadRequest, "INVALID_CODE", fmt.Sprintf("a subscribed code is at most %d bytes", maxSubscriptionCode)}
	}
	return code, nil
}

// subscribe (PUT) adds or replaces a code on a stream; what becomes of it
// comes on the stream.
func (s *Server) subscribe(c *gin.Context) error {
	code, err := subscriptionCode(c)
	if err != nil {
		return err
	}
	after := parseLastEventID(c.GetHeader("Last-Event-ID"))
	if err := s.Mux.Subscribe(c, c.Param("stream"), code, ownerOf(c), after); err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	c.Status(http.StatusNoContent)
	return nil
}

// unsubscribe (DELETE) removes a code from a stream.
func (s *Server) unsubscribe(c *gin.Context) error {
	code, err := subscriptionCode(c)
	if err != nil {
		return err
	}
	if err := s.Mux.Unsubscribe(c, c.Param("stream"), code, ownerOf(c)); err != nil {
		return fmt.Errorf("unsubscribe: %w", err)
	}
	c.Status(http.StatusNoContent)
	return nil
}
