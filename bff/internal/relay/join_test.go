package relay

import (
	"fmt"
	"net/http"
	"sync"
	"testing"

	"github.com/exportstream/exportstream/bff/internal/relay/relaytest"
)

// A browser joining a job just as its last other subscriber leaves keeps
// the job followed: the topic it joined stays the job's, wanted, so it
// gets the job's events (and is subscribed when the stream comes). The
// two meet in a window of a few instructions, so the test tries it many
// times; under -race a hub that loses the joiner fails it nearly always.
func TestASubscriberJoiningAsTheLastOneLeavesKeepsTheJobFollowed(t *testing.T) {
	b := relaytest.New(t)
	b.RefuseStreams(http.StatusServiceUnavailable) // no calls: only the hub's own bookkeeping
	h, _ := newHub(t, b, Config{})
	const tries = 20_000
	lost := 0
	for i := range tries {
		code := fmt.Sprintf("c%d", i)
		leaving := h.Subscribe("o", code, 0, nil)
		var joining *Subscription
		var wg sync.WaitGroup
		wg.Go(func() { joining = h.Subscribe("o", code, 0, nil) })
		wg.Go(leaving.Close)
		wg.Wait()
		h.mu.Lock()
		if t := h.topics[topicKey{"o", code}]; t != joining.t || !t.want {
			lost++
		}
		h.mu.Unlock()
		joining.Close()
	}
	if lost > 0 {
		t.Errorf("%d of %d subscribers joining as the last one left were left on a topic the hub dropped: no events, no end", lost, tries)
	}
}

// The first subscriber of a job gets every event its subscription brings
// (the backend answers a PUT with what it has at once), not only the
// latest: it is in the topic before the PUT can go out. A data-less event
// followed by one with data tells: the latest alone is the second. The
// window is short, so the test tries many jobs.
func TestTheFirstSubscriberGetsEveryEventItsSubscriptionBrings(t *testing.T) {
	const tries = 5000
	b, h := startHub(t, Config{})
	conn := b.NextStream(t)
	b.Answer(func(c Call) int {
		if c.Method == http.MethodPut {
			conn.Envelope(relaytest.Envelope{Owner: c.Owner, Code: c.Code, Event: "hello", ID: new("1")}, relaytest.Snapshot(c.Owner, c.Code, 2, "COMPLETED"))
		}
		return http.StatusNoContent
	})
	missed := 0
	for i := range tries {
		s := h.Subscribe("o", fmt.Sprintf("c%d", i), 0, nil)
		if evs := drainAll(t, s); len(evs) != 2 {
			missed++
		}
		s.Close()
	}
	if missed > 0 {
		t.Errorf("%d of %d first subscribers missed events their subscription brought", missed, tries)
	}
}

// Subscribers are counted, so closing one twice must count it once: the
// others stay subscribed.
func TestClosingASubscriptionTwiceLeavesTheOthersSubscribed(t *testing.T) {
	b, h := startHub(t, Config{Calls: 1})
	twice := h.Subscribe("o", "c", 0, nil)
	other := h.Subscribe("o", "c", 0, nil)
	defer other.Close()
	b.NextStream(t)
	b.NextCall(t)
	waitSubscribed(t, h, "c")
	twice.Close()
	twice.Close()
	if calls := callsBefore(t, h, b); len(calls) != 0 {
		t.Errorf("calls after one of two subscribers closed twice: %v, want none", calls)
	}
}

// Subscribers that leave, in an order that moves the others within the
// topic, get nothing more; those that stay get every event.
func TestSubscribersLeavingInAnyOrderGetNothingMoreAndTheOthersEverything(t *testing.T) {
	b, h := startHub(t, Config{Calls: 1})
	var subs []*Subscription
	for range 5 {
		subs = append(subs, h.Subscribe("o", "c", 0, nil))
	}
	conn := b.NextStream(t)
	b.NextCall(t)
	waitSubscribed(t, h, "c")
	conn.Envelope(relaytest.Snapshot("o", "c", 1, "IN_PROGRESS"))
	for _, s := range subs {
		readN(t, s, 1)
	}
	// The first leaves (the last takes its place), then the one that moved,
	// then one from the middle.
	left := []*Subscription{subs[0], subs[4], subs[2]}
	for _, s := range left {
		s.Close()
	}
	conn.Envelope(relaytest.Snapshot("o", "c", 2, "IN_PROGRESS"))
	for _, s := range []*Subscription{subs[1], subs[3]} {
		if evs := readN(t, s, 1); evs[0].Seq != 2 {
			t.Errorf("a subscriber that stayed got %+v, want seq 2", evs)
		}
	}
	// Seq 2 has reached the topic (the others have it): nothing for those that left.
	for i, s := range left {
		if evs, _ := s.Drain(); len(evs) != 0 {
			t.Errorf("subscriber %d got %+v after it left", i, evs)
		}
	}
}
