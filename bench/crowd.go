package main

import (
	"context"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// crowdConnecting is how many subscribers of a crowd connect at once.
const crowdConnecting = 256

// crowd is many subscribers watching at once, at most crowdConnecting of
// them connecting at a time. It notes when the last one has connected:
// only events emitted from then on are measured.
type crowd struct {
	slots        chan struct{}
	n            int64
	connected    atomic.Int64
	allAt        atomic.Int64 // unix ns, when the last subscriber connected
	allConnected chan struct{}
	results      []subResult
	wg           sync.WaitGroup
}

// watchCrowd starts n subscribers, subscriber i reading the stream that
// at(i) names, each for at most deadline and 5 connections. It returns
// once the last one has started connecting.
func watchCrowd(ctx context.Context, n int, deadline time.Duration, at func(i int) (target, job)) *crowd {
	c := &crowd{slots: make(chan struct{}, crowdConnecting), n: int64(n), allConnected: make(chan struct{}), results: make([]subResult, n)}
	for i := range n {
		t, j := at(i)
		c.slots <- struct{}{}
		c.wg.Add(1)
		go c.watch(ctx, i, t, j, deadline)
	}
	return c
}

func (c *crowd) watch(ctx context.Context, i int, t target, j job, deadline time.Duration) {
	defer c.wg.Done()
	s := &connectSlot{slots: c.slots}
	defer s.release()
	c.results[i] = subscribe(ctx, newSharedClient(), t, j, watchOpts{
		maxConns: 5, deadline: deadline,
		connected: func() {
			s.release()
			if c.connected.Add(1) == c.n {
				c.allAt.Store(time.Now().UnixNano())
				close(c.allConnected)
			}
		},
	})
}

// connectSlot is one subscriber's place among those connecting, given
// back once: when it has connected or, failing that, when it is done.
type connectSlot struct {
	slots chan struct{}
	once  sync.Once
}

func (s *connectSlot) release() { s.once.Do(func() { <-s.slots }) }

// waitConnected waits until every subscriber has connected, deadline
// has passed or ctx is done.
func (c *crowd) waitConnected(ctx context.Context, deadline time.Duration) {
	select {
	case <-c.allConnected:
	case <-time.After(deadline):
	case <-ctx.Done():
	}
}

// wait waits until every subscriber is done.
func (c *crowd) wait() { c.wg.Wait() }

// tally is what a crowd saw of the events emitted after its last
// subscriber connected.
type tally struct {
	lat                            latencies // µs, in the order received per subscriber
	received                       []int64   // unix ns, each delivery's receipt
	first, last                    int64     // the first and the last receipt
	perSubMin, perSubMax           int       // deliveries per subscriber
	errors, reconnects, unfinished int
}

// tally counts the subscribers' results once they are done. If not every
// subscriber connected, nothing is measured; the errors still count.
func (c *crowd) tally() tally {
	t0 := c.allAt.Load()
	if t0 == 0 {
		t0 = time.Now().UnixNano()
	}
	t := tally{first: math.MaxInt64, perSubMin: math.MaxInt}
	for _, r := range c.results {
		if r.err != nil {
			t.errors++
		}
		if !r.terminal {
			t.unfinished++
		}
		t.reconnects += r.reconnects
		got := 0
		for _, d := range r.events {
			if d.updatedAt < t0 {
				continue
			}
			got++
			t.lat = append(t.lat, d.latencyUs)
			t.received = append(t.received, d.received)
			t.first, t.last = min(t.first, d.received), max(t.last, d.received)
		}
		t.perSubMin, t.perSubMax = min(t.perSubMin, got), max(t.perSubMax, got)
	}
	return t
}
