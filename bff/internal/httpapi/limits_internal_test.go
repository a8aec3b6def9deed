package httpapi

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

func TestARateLimitersMapStaysBoundedAndForgetsRefilledBucketsFirst(t *testing.T) {
	now := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	r := newRateLimiter(10, 10, func() time.Time { return now })
	r.max = 100
	for range 10 {
		r.take("flood") // drained: a second from full
	}
	for i := range 99 {
		r.take(fmt.Sprint("quiet", i)) // a tenth of a second from full
	}
	now = now.Add(500 * time.Millisecond)
	r.take("new") // at the bound: the refilled buckets go, the flood's stays
	if len(r.buckets) != 2 {
		t.Errorf("%d buckets after the sweep, want 2: the flood's and the new one", len(r.buckets))
	}
	taken := 0
	for ok, _ := r.take("flood"); ok; ok, _ = r.take("flood") {
		taken++
	}
	if taken != 5 {
		t.Errorf("the flood took %d tokens half a second after it drained its bucket, want 5: its bucket was kept", taken)
	}
	for i := range 1000 { // keys no sweep can free: a quarter goes at random
		r.take(fmt.Sprint("many", i))
		r.take(fmt.Sprint("many", i))
		if len(r.buckets) > r.max {
			t.Fatalf("%d buckets, over the bound of %d", len(r.buckets), r.max)
		}
	}
}

func TestAStreamCountedOnAnAddressIsUncountedWhenItCloses(t *testing.T) {
	l := newStreamLimits(20, 2, 0)
	if err := errors.Join(l.acquire("a", "192.0.2.1"), l.acquire("b", "192.0.2.1")); err != nil {
		t.Fatal(err)
	}
	if err := l.acquire("c", "192.0.2.1"); !errors.Is(err, errAddressStreams) {
		t.Errorf("a third stream from the address: %v, want errAddressStreams", err)
	}
	l.release("a", "192.0.2.1")
	if err := l.acquire("c", "192.0.2.1"); err != nil {
		t.Errorf("a stream after one closed: %v", err)
	}
	l.release("b", "192.0.2.1")
	l.release("c", "192.0.2.1")
	if len(l.perAddress) != 0 || len(l.perSession) != 0 || l.total != 0 {
		t.Errorf("all streams closed, still counted: %v %v %d", l.perAddress, l.perSession, l.total)
	}
}
