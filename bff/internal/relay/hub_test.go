package relay

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// scriptedUpstream is a collaborator for the hub's unit tests: each open
// returns the next prepared stream body. The end-to-end behaviour is tested
// against the real backend in the httpapi package.
type scriptedUpstream struct {
	bodies chan io.ReadCloser
	opens  chan string // the Last-Event-ID of each open
}

func (s *scriptedUpstream) open(ctx context.Context, _ string, lastEventID string) (io.ReadCloser, error) {
	s.opens <- lastEventID
	select {
	case b := <-s.bodies:
		return b, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func snapshot(seq int, status string) string {
	return fmt.Sprintf("id: %d\ndata: {\"code\":\"c\",\"status\":%q,\"seq\":%d}\n\n", seq, status, seq)
}

type noStats struct{}

func (noStats) UpstreamOpened()    {}
func (noStats) UpstreamClosed()    {}
func (noStats) UpstreamConnected() {}

func newTestHub(t *testing.T, up *scriptedUpstream, buffer int) *Hub {
	t.Helper()
	h := NewHub(up.open, Config{GiveUp: time.Minute, MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond, Buffer: buffer},
		noStats{}, slog.New(slog.DiscardHandler))
	t.Cleanup(h.Close)
	return h
}

// drainAll reads a subscription until it ends.
func drainAll(t *testing.T, s *Subscription) []Event {
	t.Helper()
	var all []Event
	for {
		select {
		case <-s.Ready():
		case <-time.After(10 * time.Second):
			t.Fatal("subscription did not end")
		}
		evs, ended := s.Drain()
		all = append(all, evs...)
		if ended {
			return all
		}
	}
}

func TestASlowSubscriberKeepsTheLatestSnapshotsAndAlwaysTheFinalOne(t *testing.T) {
	up := &scriptedUpstream{bodies: make(chan io.ReadCloser, 1), opens: make(chan string, 10)}
	h := newTestHub(t, up, 4)
	s := h.Subscribe("c", 0)
	defer s.Close()

	var b strings.Builder
	for seq := 1; seq < 50; seq++ {
		b.WriteString(snapshot(seq, "IN_PROGRESS"))
	}
	b.WriteString(snapshot(50, "COMPLETED"))
	up.bodies <- io.NopCloser(strings.NewReader(b.String()))
	// The subscriber reads nothing until the upstream has relayed everything.
	for ended := false; !ended; {
		<-s.Ready()
		s.mu.Lock()
		ended = s.ended
		s.mu.Unlock()
	}
	evs, _ := s.Drain()
	if len(evs) > 4 {
		t.Errorf("a slow subscriber got %d queued events, want at most its buffer of 4", len(evs))
	}
	if last := evs[len(evs)-1]; last.Seq != 50 || !last.End {
		t.Errorf("last event = %+v, want the final seq 50", last)
	}
	for i := 1; i < len(evs); i++ {
		if evs[i].Seq <= evs[i-1].Seq {
			t.Errorf("seq %d after %d", evs[i].Seq, evs[i-1].Seq)
		}
	}
}

func TestAnUpstreamThatDropsIsResumedWithTheLastEventID(t *testing.T) {
	up := &scriptedUpstream{bodies: make(chan io.ReadCloser, 2), opens: make(chan string, 10)}
	h := newTestHub(t, up, 64)
	s := h.Subscribe("c", 0)
	defer s.Close()

	up.bodies <- io.NopCloser(strings.NewReader(snapshot(1, "PENDING") + snapshot(2, "IN_PROGRESS")))
	up.bodies <- io.NopCloser(strings.NewReader(snapshot(3, "COMPLETED")))
	evs := drainAll(t, s)
	if first, second := <-up.opens, <-up.opens; first != "" || second != "2" {
		t.Errorf("opens with Last-Event-ID %q then %q, want none then 2", first, second)
	}
	if len(evs) != 3 || evs[2].Seq != 3 {
		t.Errorf("got %+v, want seqs 1, 2, 3 across the drop", evs)
	}
}

func TestALateSubscriberGetsTheLatestSnapshotAtOnce(t *testing.T) {
	up := &scriptedUpstream{bodies: make(chan io.ReadCloser, 1), opens: make(chan string, 10)}
	h := newTestHub(t, up, 64)
	first := h.Subscribe("c", 0)
	defer first.Close()
	pr, pw := io.Pipe()
	up.bodies <- pr
	_, _ = io.WriteString(pw, snapshot(7, "IN_PROGRESS"))
	<-first.Ready()

	late := h.Subscribe("c", 0)
	defer late.Close()
	evs, ended := late.Drain()
	if ended || len(evs) != 1 || evs[0].Seq != 7 {
		t.Errorf("late subscriber got %+v (ended %v), want the snapshot seq 7 at once", evs, ended)
	}
	if n := len(up.opens); n != 1 {
		t.Errorf("%d upstream opens for two subscribers, want 1", n)
	}
	_ = pw.Close()
}
