package relay

import (
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/exportstream/exportstream/bff/internal/relay/relaytest"
)

// subscribedOn reports whether owner's code is subscribed on the open
// stream, as the hub sees it.
func subscribedOn(h *Hub, owner, code string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	t := h.topics[topicKey{owner, code}]
	return t != nil && h.stream != "" && t.on == h.gen
}

// blockFanOut sends an event of o's job slow, the hub's first, and
// returns once its fan-out is blocked in slow's Notify, where it stays
// until release is closed.
func blockFanOut(t *testing.T, b *relaytest.Backend, slow *Subscription, release <-chan struct{}) {
	t.Helper()
	entered := make(chan struct{})
	var once sync.Once
	slow.Notify(func() { once.Do(func() { close(entered); <-release }) })
	conn := b.NextStream(t)
	b.NextCall(t)
	conn.Envelope(relaytest.Snapshot("o", "slow", 1, "IN_PROGRESS"))
	within(t, entered, "the fan-out never reached the subscriber")
}

// Locks sized to the work: a topic's fan-out holds only that topic's lock,
// so while it is slow (here a Notify that blocks, which stands for a long
// fan-out) other jobs are still subscribed. Under one hub-wide lock held
// while pushing to subscribers, Subscribe would wait for it.
func TestABlockedFanOutDoesNotHoldUpSubscribingAnotherJob(t *testing.T) {
	b, h := startHub(t, Config{})
	slow := h.Subscribe("o", "slow", 0, nil)
	defer slow.Close()
	release := make(chan struct{})
	blockFanOut(t, b, slow, release)
	defer close(release) // before the hub's Close (a cleanup): it waits for the reader

	subscribed := make(chan *Subscription, 1)
	go func() { subscribed <- h.Subscribe("o", "other", 0, nil) }()
	select {
	case s := <-subscribed:
		defer s.Close()
	case <-time.After(wait):
		t.Fatal("Subscribe for another job waited for a blocked fan-out")
	}
	if c := b.NextCall(t); c.Method != http.MethodPut || c.Code != "other" {
		t.Fatalf("call %v, want PUT other", c)
	}
	waitSubscribed(t, h, "other") // its PUT completes while the fan-out is blocked
}

// blockedIn reports whether a goroutine waits for a lock inside fn.
func blockedIn(fn string) bool {
	buf := make([]byte, 1<<20)
	for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
		if strings.Contains(g, "[sync.Mutex.Lock") && strings.Contains(g, fn) {
			return true
		}
	}
	return false
}

// The same while a subscriber of the blocked topic leaves: leaving waits
// for that topic's lock, and must not hold the hub's while it does.
func TestASubscriberLeavingABlockedFanOutDoesNotHoldUpSubscribingAnotherJob(t *testing.T) {
	b, h := startHub(t, Config{})
	slow := h.Subscribe("o", "slow", 0, nil)
	leaving := h.Subscribe("o", "slow", 0, nil)
	release := make(chan struct{})
	var others []*Subscription
	defer func() { // in this order: Close waits for the fan-out
		close(release)
		for _, s := range append(others, slow) {
			s.Close()
		}
	}()
	leaving.Notify(func() {})
	blockFanOut(t, b, slow, release)

	go leaving.Close()
	if !eventually(func() bool { return blockedIn("relay.(*Hub).unsubscribe") }) {
		t.Fatal("the leaving subscriber did not wait for the blocked fan-out")
	}
	subscribed := make(chan *Subscription, 1)
	go func() { subscribed <- h.Subscribe("o", "other", 0, nil) }()
	select {
	case s := <-subscribed:
		others = append(others, s)
	case <-time.After(wait):
		t.Fatal("Subscribe for another job waited for a subscriber leaving a blocked fan-out")
	}
	if c := b.NextCall(t); c.Method != http.MethodPut || c.Code != "other" {
		t.Fatalf("call %v, want PUT other", c)
	}
}
