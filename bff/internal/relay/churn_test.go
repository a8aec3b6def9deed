package relay

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/exportstream/exportstream/bff/internal/relay/relaytest"
)

// checkOwnEvents reports what is wrong with evs, the events a subscriber
// of code got: each must be code's, with seqs increasing, and at most one
// (the last) may end the stream.
func checkOwnEvents(code string, evs []Event) error {
	var last int64
	for i, ev := range evs {
		if !strings.Contains(ev.Data, `"code":"`+code+`"`) {
			return fmt.Errorf("event %d is not %s's: %+v", i, code, ev)
		}
		if ev.Seq <= last {
			return fmt.Errorf("seq %d after %d", ev.Seq, last)
		}
		if ev.End && i != len(evs)-1 {
			return fmt.Errorf("event %d ends the stream but %d follow", i, len(evs)-1-i)
		}
		last = ev.Seq
	}
	return nil
}

func TestTenThousandSubscribesAndUnsubscribesOnOneStreamWhileEventsFlow(t *testing.T) {
	const (
		subscriptions = 10_000 // each a Subscribe and a Close
		workers       = 8
		stayJobs      = 8  // jobs with subscribers from start to end
		churnJobs     = 32 // jobs only the churn subscribes to
		stayers       = 2  // per stay job
	)
	start := time.Now()
	b, h := startHub(t, Config{Buffer: 8})
	type job struct{ owner, code string }
	var stay, churn []job
	for i := range stayJobs {
		stay = append(stay, job{fmt.Sprintf("o%d", i%3), fmt.Sprintf("stay-%d", i)})
	}
	for i := range churnJobs {
		churn = append(churn, job{fmt.Sprintf("o%d", i%3), fmt.Sprintf("churn-%d", i)})
	}
	all := append(append([]job(nil), stay...), churn...)

	// Subscribers that stay read until their stream ends.
	var stayWG sync.WaitGroup
	stayed := make(map[*Subscription][]Event)
	var stayedMu sync.Mutex
	for _, j := range stay {
		for range stayers {
			s := h.Subscribe(j.owner, j.code, 0, nil)
			defer s.Close()
			stayWG.Go(func() {
				var evs []Event
				for ended := false; !ended; {
					select {
					case <-s.Ready():
					case <-time.After(30 * time.Second):
						t.Errorf("a subscriber of %s that stayed did not end", j.code)
						return
					}
					var batch []Event
					batch, ended = s.Drain()
					evs = append(evs, batch...)
				}
				stayedMu.Lock()
				stayed[s] = evs
				stayedMu.Unlock()
			})
		}
	}
	conn := b.NextStream(t)

	// Events flow on every job, a round every 2 ms, until the churn is
	// over; then the jobs with subscribers that stayed finish.
	churnDone := make(chan struct{})
	produced := make(chan struct{})
	go func() {
		defer close(produced)
		seq := int64(0)
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			seq++
			var envs []relaytest.Envelope
			for _, j := range all {
				envs = append(envs, relaytest.Snapshot(j.owner, j.code, seq, "IN_PROGRESS"))
			}
			conn.Envelope(envs...)
			select {
			case <-churnDone:
				envs = envs[:0]
				for _, j := range stay {
					envs = append(envs, relaytest.Snapshot(j.owner, j.code, seq+1, "COMPLETED"))
				}
				conn.Envelope(envs...)
				return
			case <-tick.C:
			}
		}
	}()

	// The churn: subscribe to any job, half of the time read one event,
	// leave.
	var churnWG sync.WaitGroup
	for w := range workers {
		churnWG.Go(func() {
			rnd := rand.New(rand.NewPCG(uint64(w), 1))
			for range subscriptions / workers {
				j := all[rnd.IntN(len(all))]
				s := h.Subscribe(j.owner, j.code, 0, nil)
				if rnd.IntN(2) == 0 {
					select {
					case <-s.Ready():
					case <-time.After(5 * time.Second):
						t.Errorf("a subscriber of %s got nothing in 5 s while events flow", j.code)
					}
				}
				evs, _ := s.Drain()
				if err := checkOwnEvents(j.code, evs); err != nil {
					t.Errorf("a passing subscriber of %s: %v", j.code, err)
				}
				s.Close()
			}
		})
	}
	churnWG.Wait()
	close(churnDone)
	<-produced
	stayWG.Wait()

	for s, evs := range stayed {
		if err := checkOwnEvents(s.Code(), evs); err != nil {
			t.Errorf("a subscriber of %s that stayed: %v", s.Code(), err)
		}
		if len(evs) == 0 || !evs[len(evs)-1].End || !strings.Contains(evs[len(evs)-1].Data, "COMPLETED") {
			t.Errorf("a subscriber of %s that stayed did not end with its terminal event: %d events", s.Code(), len(evs))
		}
	}
	if len(stayed) != stayJobs*stayers {
		t.Errorf("%d subscribers that stayed finished, want %d", len(stayed), stayJobs*stayers)
	}
	if !eventually(func() bool { h.mu.Lock(); defer h.mu.Unlock(); return len(h.topics) == 0 }) {
		t.Errorf("%d topics left after every subscriber left", len(h.topics))
	}

	// Per job, the backend saw a PUT, then a DELETE for it, and so on;
	// a job that ended while subscribed, its PUT alone.
	calls := make(map[string][]string)
	for _, c := range b.Calls() {
		if c.Stream != conn.ID {
			t.Errorf("a call on another stream: %v", c)
		}
		calls[c.Owner+"/"+c.Code] = append(calls[c.Owner+"/"+c.Code], c.Method)
	}
	for _, j := range stay {
		if got := calls[j.owner+"/"+j.code]; len(got) != 1 || got[0] != http.MethodPut {
			t.Errorf("calls for %s: %v, want one PUT (its subscribers stayed until it ended)", j.code, got)
		}
	}
	total := 0
	for _, j := range churn {
		got := calls[j.owner+"/"+j.code]
		total += len(got)
		for i, m := range got {
			if want := []string{http.MethodPut, http.MethodDelete}[i%2]; m != want {
				t.Errorf("calls for %s: %s at %d, want %s (PUT and DELETE alternate)", j.code, m, i, want)
				break
			}
		}
		if len(got)%2 != 0 {
			t.Errorf("calls for %s end with a PUT: still subscribed after every subscriber left", j.code)
		}
	}
	if n := len(b.Attempts()); n != 1 {
		t.Errorf("%d stream connections, want 1", n)
	}
	took := time.Since(start)
	t.Logf("%d subscriptions in %v, %d calls for the churned jobs", subscriptions, took, total)
	if took > time.Minute {
		t.Errorf("took %v, want well under a minute", took)
	}
}
