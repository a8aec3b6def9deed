package relay

import (
	"net/http"
	"testing"
	"time"
)

// FuzzUpstreamBytes: whatever bytes the backend sends, the relay neither
// crashes nor hangs, relays only events with data, and ends its
// subscribers with a final event once the backend stops knowing the job.
func FuzzUpstreamBytes(f *testing.F) {
	for _, seed := range []string{
		snapshot(1, "IN_PROGRESS") + snapshot(2, "COMPLETED"),
		"id: 1\r\ndata: {\"status\":\"FAILED\"}\r\n\r\n",
		"\ufeffdata\ndata: x\n\n", ": only a comment\n\n", "id: \x00\nretry: -1\n\n",
		"data: {\"status\":", "event: x\nid: 99999999999999999999\ndata: y\n\n",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, body string) {
		b := newScriptedBackend(t)
		// A junk id can make every reconnection fail; GiveUp still ends it.
		h, _ := newTestHub(t, b, Config{GiveUp: 200 * time.Millisecond})
		s := h.Subscribe("o", "c", 0, nil)
		defer s.Close()
		b.scripts <- stream(body)
		b.scripts <- status(http.StatusNotFound) // if the body did not end the job
		evs := drainAll(t, s)
		if len(evs) == 0 || !evs[len(evs)-1].End {
			t.Fatalf("subscription ended without a final event: %+v", evs)
		}
		for _, ev := range evs {
			if ev.Data == "" {
				t.Fatalf("relayed an event without data: %+v", ev)
			}
		}
	})
}
