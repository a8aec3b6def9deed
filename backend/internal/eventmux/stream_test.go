package eventmux

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/exportstream/exportstream/backend/internal/job"
	"github.com/exportstream/exportstream/backend/internal/store"
	"github.com/exportstream/exportstream/internal/envelope"
)

// These tests hold the writer's side still (nobody Takes) to see what a
// stream keeps for a reader that does not read.

func openStream(t *testing.T, limit int) (*Hub, *Stream, store.Store) {
	t.Helper()
	st := store.NewMemory()
	h := New(Config{Store: st, MaxSubscriptions: limit})
	s, err := h.Open(t.Context(), func(j job.Job) ([]byte, error) { return json.Marshal(j) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return h, s, st
}

func created(t *testing.T, st store.Store) string {
	t.Helper()
	j, _, err := st.Create(t.Context(), job.New(job.Request{Rows: 1}, "o", time.Now().UTC()), "")
	if err != nil {
		t.Fatal(err)
	}
	return j.Code
}

func settled(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after 10 s: not %s", what)
		}
	}
}

func TestEndsNotYetWrittenCountAgainstTheBound(t *testing.T) {
	h, s, _ := openStream(t, 2)
	for _, code := range []string{"not-a-code-1", "not-a-code-2"} {
		if err := s.subscribe(code, "o", 0); err != nil {
			t.Fatal(err)
		}
	}
	settled(t, "both ended", func() bool { return h.Subscriptions() == 0 && h.Pending() == 2 })
	if err := s.subscribe("not-a-code-3", "o", 0); !errors.Is(err, ErrTooManySubscriptions) {
		t.Fatalf("a third code with two ends unwritten: %v, want ErrTooManySubscriptions", err)
	}
	if err := s.subscribe("not-a-code-1", "o", 0); err != nil {
		t.Errorf("again a code whose end is unwritten (it replaces it): %v", err)
	}
	settled(t, "it ended again", func() bool { return h.Pending() == 2 && h.Subscriptions() == 0 })
	if got := s.Take(nil); len(got) != 2 || got[0].Code != "not-a-code-2" || got[1].Code != "not-a-code-1" {
		t.Errorf("taken %v", got)
	}
	if err := s.subscribe("not-a-code-3", "o", 0); err != nil {
		t.Errorf("once the ends are written: %v", err)
	}
}

func TestPendingKeepsTheLatestPerCodeInTheOrderCodesBecamePending(t *testing.T) {
	h, s, st := openStream(t, 10)
	a, b := created(t, st), created(t, st)
	if err := s.subscribe(a, "o", 0); err != nil {
		t.Fatal(err)
	}
	settled(t, "a's snapshot pending", func() bool { return h.Pending() == 1 })
	if err := s.subscribe(b, "o", 0); err != nil {
		t.Fatal(err)
	}
	settled(t, "b's snapshot pending", func() bool { return h.Pending() == 2 })
	var last job.Job
	for p := range 500 {
		for _, code := range []string{b, a} {
			j, err := st.Update(t.Context(), code, func(j *job.Job) error { j.Status, j.Progress = job.StatusInProgress, p%100; return nil })
			if err != nil {
				t.Fatal(err)
			}
			last = j
		}
		if n := h.Pending(); n > 2 {
			t.Fatalf("%d pending for 2 subscriptions", n)
		}
	}
	settled(t, "a's and b's latest pending", func() bool {
		ga, gb := s.peek("o", a), s.peek("o", b)
		return ga.ID != nil && *ga.ID == "501" && gb.ID != nil && *gb.ID == "501"
	})
	if _, err := st.Update(t.Context(), a, func(j *job.Job) error { j.Status = job.StatusCancelled; return nil }); err != nil {
		t.Fatal(err)
	}
	settled(t, "a's end pending", func() bool { return s.peek("o", a).End == envelope.EndDone })
	got := s.Take(nil)
	if len(got) != 2 || got[0].Code != a || got[1].Code != b {
		t.Fatalf("taken %v; want a then b, as they became pending", got)
	}
	if *got[0].ID != "502" || got[0].End != envelope.EndDone || *got[1].ID != "501" || got[1].End != "" {
		t.Errorf("taken a %s %q, b %s %q; want a's terminal 502 with its end, b's latest 501 (last change %d)", *got[0].ID, got[0].End, *got[1].ID, got[1].End, last.Seq)
	}
	if h.Pending() != 0 || h.Subscriptions() != 1 {
		t.Errorf("after Take: %d pending, %d subscriptions; want 0 and b's", h.Pending(), h.Subscriptions())
	}
}

// peek is owner's code's pending envelope, or none.
func (s *Stream) peek(owner, code string) envelope.Envelope {
	s.mu.Lock()
	defer s.mu.Unlock()
	if el, ok := s.pending[subKey{owner, code}]; ok {
		return el.Value.(envelope.Envelope)
	}
	return envelope.Envelope{}
}
