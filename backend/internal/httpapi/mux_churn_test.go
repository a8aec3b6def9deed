package httpapi_test

import (
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/exportstream/exportstream/backend/internal/job"
	"github.com/exportstream/exportstream/internal/envelope"
)

// TestTenThousandSubscriptionCallsOnOneStreamWhileEventsFlow: four callers
// subscribe and unsubscribe codes on one stream, 10,000 calls in all, each
// call followed by a change of one of its jobs. Each caller owns its codes
// (as the BFF serialises the calls of one code) and subscribes with the
// seq it last knows, as the BFF does. Then every job ends.
//
// Every code subscribed at the end — those subscribed once before the
// churn, and churned ones whose last call was a PUT — sees its terminal
// snapshot exactly once, as its last envelope; a code whose last call was
// a DELETE sees none; every code's ids only increase on the stream. When
// the stream closes no goroutine of it is left.
func TestTenThousandSubscriptionCallsOnOneStreamWhileEventsFlow(t *testing.T) {
	const (
		callers         = 4
		calls           = 10_000
		steadyPerCaller = 5
		churnPerCaller  = 12
		timeLimit       = 2 * time.Minute
	)
	start := time.Now()
	b := newBackend(t)
	m := openMux(t, b.url, muxOptions{})
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: callers}}
	defer client.CloseIdleConnections()
	put := func(code string, after int64) int {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPut, b.url+"/v1/events/"+m.id+"/subscriptions/"+code, nil)
		req.Header.Set("X-Export-Owner", "o")
		req.Header.Set("Last-Event-ID", strconv.FormatInt(after, 10))
		return send(t, client, req)
	}
	del := func(code string) int {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodDelete, b.url+"/v1/events/"+m.id+"/subscriptions/"+code, nil)
		req.Header.Set("X-Export-Owner", "o")
		return send(t, client, req)
	}

	type caller struct {
		steady, churn []string
		subscribed    map[string]bool
	}
	cs := make([]*caller, callers)
	for i := range cs {
		c := &caller{subscribed: map[string]bool{}}
		for range steadyPerCaller {
			j := storedJob(t, b.store, "o")
			c.steady = append(c.steady, j.Code)
			if put(j.Code, 0) != http.StatusNoContent {
				t.Fatal("subscribe a steady code")
			}
		}
		for range churnPerCaller {
			c.churn = append(c.churn, storedJob(t, b.store, "o").Code)
		}
		cs[i] = c
	}

	var wg sync.WaitGroup
	for i, c := range cs {
		wg.Go(func() {
			rnd := rand.New(rand.NewPCG(uint64(i), 42))
			all := append(append([]string{}, c.steady...), c.churn...)
			for n := range calls / callers {
				code := c.churn[rnd.IntN(len(c.churn))]
				if c.subscribed[code] {
					if st := del(code); st != http.StatusNoContent {
						t.Errorf("DELETE: %d", st)
						return
					}
				} else {
					now, err := b.store.Get(t.Context(), code)
					if err != nil {
						t.Error(err)
						return
					}
					if st := put(code, now.Seq); st != http.StatusNoContent {
						t.Errorf("PUT: %d", st)
						return
					}
				}
				c.subscribed[code] = !c.subscribed[code]
				changed := all[rnd.IntN(len(all))]
				if _, err := b.store.Update(t.Context(), changed, func(j *job.Job) error {
					j.Status, j.Progress = job.StatusInProgress, n%100
					return nil
				}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	churned := time.Since(start)

	ends := map[string]int64{} // code → its terminal seq, for the codes still subscribed
	var unsubscribed []string
	for _, c := range cs {
		for _, code := range append(append([]string{}, c.steady...), c.churn...) {
			seq := cancelJob(t, b.store, code).Seq
			if c.subscribed[code] || !slices.Contains(c.churn, code) {
				ends[code] = seq
			} else {
				unsubscribed = append(unsubscribed, code)
			}
		}
	}
	last := map[string]int64{}
	endsSeen := map[string]int{}
	check := func(e envelope.Envelope) {
		if e.End == envelope.EndNotFound {
			t.Errorf("%s ended not_found", e.Code)
			return
		}
		if e.ID != nil {
			id := envID(t, e)
			if id <= last[e.Code] {
				t.Errorf("%s: id %d after %d", e.Code, id, last[e.Code])
			}
			last[e.Code] = id
		}
		if e.End == envelope.EndDone {
			endsSeen[e.Code]++
			if _, ok := ends[e.Code]; !ok {
				t.Errorf("%s, unsubscribed, ended: %s", e.Code, show(e))
			} else if e.ID == nil || envID(t, e) != ends[e.Code] {
				t.Errorf("%s ended without its terminal snapshot (seq %d): %s", e.Code, ends[e.Code], show(e))
			}
		}
	}
	m.until(t, func(e envelope.Envelope) bool {
		check(e)
		return len(endsSeen) == len(ends)
	})
	// Anything still coming would be a second end, or an event of a code that ended.
	drain := time.After(200 * time.Millisecond)
	for waiting := true; waiting; {
		select {
		case e := <-m.envs:
			check(e)
			t.Errorf("after every end: %s", show(e))
		case <-drain:
			waiting = false
		}
	}
	for code, n := range endsSeen {
		if n != 1 {
			t.Errorf("%s: %d ends, want 1", code, n)
		}
	}
	if len(unsubscribed) == 0 || len(ends) == steadyPerCaller*callers {
		t.Errorf("%d codes unsubscribed and %d subscribed at the end: the churn tested one side only", len(unsubscribed), len(ends)-steadyPerCaller*callers)
	}
	if took := time.Since(start); took > timeLimit {
		t.Errorf("took %s, over %s", took, timeLimit)
	}
	t.Logf("%d calls on one stream in %s; %d codes subscribed at the end, %d not", calls, churned.Round(time.Millisecond), len(ends), len(unsubscribed))

	m.close()
	eventually(t, "no goroutine of the stream left", func() bool { return muxGoroutines() == 0 })
	if n, p := b.api.Mux.Subscriptions(), b.api.Mux.Pending(); n != 0 || p != 0 {
		t.Errorf("after the stream closed: %d subscriptions, %d pending", n, p)
	}
}

func send(t *testing.T, client *http.Client, req *http.Request) int {
	t.Helper()
	resp, err := client.Do(req)
	if err != nil {
		t.Error(err)
		return 0
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}
