package eventmux

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/exportstream/exportstream/backend/internal/job"
	"github.com/exportstream/exportstream/backend/internal/store"
)

// Redis mode. Replicas share one DNS name, so a subscription call may land
// on any of them; the stream lives on one. Every call is published on the
// stream's channel, <prefix>mux:<stream id>, which only the replica holding
// the stream subscribes:
//
//   - no receiver: no replica holds the stream (404);
//   - one Redis connection carries a channel's messages in the order they
//     were published, and PUBLISH has queued a message on the holder's
//     connection before it answers, so calls the caller sends one after
//     the other (a PUT, then once answered a DELETE) apply in that order
//     even when they land on different replicas;
//   - a PUT waits for the holder's answer, pushed on the list named in the
//     call (BLPOP), since only the holder knows whether the stream has
//     room: it answers the bound (429) as the embedded mode does.
//
// A holder whose channel connection fails ends the stream (calls published
// meanwhile are lost); its caller reconnects and subscribes again.

// call is one subscription call on a stream's channel.
type call struct {
	Op    string `json:"op"`
	Code  string `json:"code"`
	Owner string `json:"owner,omitempty"`
	After int64  `json:"after,omitempty"`
	// Answer is the list the holder pushes its answer on (PUT only).
	Answer string `json:"answer,omitempty"`
}

const (
	opPut    = "put"
	opDelete = "delete"

	answerOK       = "ok"
	answerTooMany  = "too_many"
	answerNotFound = "not_found"

	// answerTTL keeps an answer nobody waits for any more from staying.
	answerTTL = time.Minute
)

func (h *Hub) channel(stream string) string { return h.cfg.Prefix + "mux:" + stream }

// publish sends c to the replica holding stream and, for a PUT, waits for
// its answer.
func (h *Hub) publish(ctx context.Context, stream string, c call) error {
	id, err := job.ParseCode(stream) // stream ids are UUIDs too
	if err != nil {
		return ErrStreamNotFound
	}
	rdb, ch := h.cfg.Redis, h.channel(id)
	if c.Op == opPut {
		c.Answer = h.cfg.Prefix + "mux:answer:" + uuid.NewString()
	}
	payload, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("subscription call: %w", err)
	}
	n, err := rdb.Publish(ctx, ch, payload).Result()
	if err != nil {
		return store.RedisError("publish subscription call", err)
	}
	if n == 0 {
		return ErrStreamNotFound
	}
	if c.Answer == "" {
		return nil
	}
	got, err := rdb.BLPop(ctx, h.cfg.AnswerTimeout, c.Answer).Result()
	switch {
	case errors.Is(err, redis.Nil):
		// No answer: the stream may have ended before it read the call.
		if subs, err := rdb.PubSubNumSub(ctx, ch).Result(); err == nil && subs[ch] == 0 {
			return ErrStreamNotFound
		}
		return fmt.Errorf("subscribe on %s: %w", id, ErrNoAnswer)
	case err != nil:
		return store.RedisError("await subscription answer", err)
	}
	switch got[1] {
	case answerOK:
		return nil
	case answerTooMany:
		return ErrTooManySubscriptions
	case answerNotFound:
		return ErrStreamNotFound
	}
	return fmt.Errorf("subscribe on %s: unknown answer %q", id, got[1])
}

// listen subscribes the stream's channel and waits for Redis to confirm,
// then applies the calls that arrive on it until the stream ends.
func (s *Stream) listen(ctx context.Context) error {
	ps := s.hub.cfg.Redis.Subscribe(ctx, s.hub.channel(s.id))
	if _, err := ps.Receive(ctx); err != nil {
		_ = ps.Close()
		return store.RedisError("subscribe event stream channel", err)
	}
	s.pubsub, s.received = ps, make(chan struct{})
	s.wg.Add(1)
	go s.receive()
	return nil
}

// receive applies the calls of the stream's channel. It reads with a
// context of its own, not the stream's: Close ends it by unsubscribing,
// and it reads on until Redis confirms, so that once Close has returned
// no PUBLISH counts the stream as a receiver.
func (s *Stream) receive() {
	defer s.wg.Done()
	defer close(s.received)
	for {
		msg, err := s.pubsub.Receive(context.Background())
		if err != nil {
			if s.ctx.Err() == nil {
				s.fail(store.RedisError("receive subscription calls", err))
			}
			return
		}
		switch m := msg.(type) {
		case *redis.Message:
			s.apply(m.Payload)
		case *redis.Subscription:
			if m.Kind == "unsubscribe" {
				return // Close's
			}
			// go-redis subscribed again after losing the connection:
			// calls published meanwhile are lost.
			s.fail(fmt.Errorf("event stream channel resubscribed (%s): calls may have been lost", m.Kind))
			return
		}
	}
}

// unlisten unsubscribes the stream's channel and waits (a bounded time)
// for Redis to confirm, then closes the channel's connection.
func (s *Stream) unlisten() {
	ctx, cancel := context.WithTimeout(context.Background(), s.hub.cfg.AnswerTimeout)
	defer cancel()
	if err := s.pubsub.Unsubscribe(ctx, s.hub.channel(s.id)); err == nil {
		select {
		case <-s.received:
		case <-ctx.Done():
		}
	}
	_ = s.pubsub.Close() // ends receive if it still reads
}

// apply runs one call on the stream and answers it if asked to.
func (s *Stream) apply(payload string) {
	var c call
	if err := json.Unmarshal([]byte(payload), &c); err != nil {
		s.hub.log.Warn("event stream: malformed subscription call", "stream", s.id, "err", err)
		return
	}
	var err error
	switch c.Op {
	case opPut:
		err = s.subscribe(c.Code, c.Owner, c.After)
	case opDelete:
		err = s.unsubscribe(c.Code, c.Owner)
	default:
		s.hub.log.Warn("event stream: unknown subscription call", "stream", s.id, "op", c.Op)
		return
	}
	if c.Answer == "" {
		return
	}
	answer := answerOK
	switch {
	case errors.Is(err, ErrTooManySubscriptions):
		answer = answerTooMany
	case errors.Is(err, ErrStreamNotFound):
		answer = answerNotFound
	}
	// Not the stream's context: a call that arrives while it closes gets
	// its not_found at once.
	ctx, cancel := context.WithTimeout(context.Background(), s.hub.cfg.AnswerTimeout)
	defer cancel()
	_, perr := s.hub.cfg.Redis.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.LPush(ctx, c.Answer, answer)
		p.PExpire(ctx, c.Answer, answerTTL)
		return nil
	})
	if perr != nil {
		s.hub.log.Warn("event stream: answer a subscription call", "stream", s.id, "code", c.Code, "err", perr)
	}
}
