package relay

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// upstreamAt is an Upstream for a loopback server that is not a scripted
// event stream: one that fails every attempt.
type upstreamAt struct {
	url    string
	client *http.Client
}

func (u upstreamAt) EventsRequest(ctx context.Context, _, code string) (*http.Request, error) {
	return http.NewRequestWithContext(ctx, http.MethodGet, u.url+"/events/"+code, nil)
}

func (u upstreamAt) HTTPClient() *http.Client { return u.client }

// answering503 is a degraded backend: every request gets 503; attempts
// receives the time of each.
func answering503(t *testing.T, attempts chan<- time.Time) Upstream {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		select {
		case attempts <- time.Now():
		default:
		}
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	t.Cleanup(srv.Close)
	return upstreamAt{srv.URL, srv.Client()}
}

// droppingConnections accepts every connection and closes it at once,
// before any answer.
func droppingConnections(t *testing.T, attempts chan<- time.Time) Upstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			select {
			case attempts <- time.Now():
			default:
			}
			_ = c.Close()
		}
	}()
	t.Cleanup(func() { _ = ln.Close(); <-done })
	return upstreamAt{"http://" + ln.Addr().String(), &http.Client{}}
}

func TestAnUnreachableUpstreamIsRetriedWithGrowingGapsBoundedByMaxBackoff(t *testing.T) {
	const minBackoff, maxBackoff, attempts = 5 * time.Millisecond, 40 * time.Millisecond, 11
	for _, tc := range []struct {
		name    string
		backend func(*testing.T, chan<- time.Time) Upstream
	}{
		{"a backend answering 503", answering503},
		{"a backend dropping connections", droppingConnections},
	} {
		t.Run(tc.name, func(t *testing.T) {
			at := make(chan time.Time, attempts)
			h := NewHub(tc.backend(t, at), Config{GiveUp: time.Minute, MinBackoff: minBackoff, MaxBackoff: maxBackoff, Buffer: 4}, &counts{}, slog.New(slog.DiscardHandler))
			t.Cleanup(h.Close)
			s := h.Subscribe("o", "c", 0, nil)
			defer s.Close()

			var times []time.Time
			for len(times) < attempts {
				select {
				case ts := <-at:
					times = append(times, ts)
				case <-time.After(10 * time.Second):
					t.Fatalf("%d attempts in 10 s, want %d", len(times), attempts)
				}
			}
			// The i-th delay is jittered by ±50% around min(MinBackoff·2^i,
			// MaxBackoff): it is never shorter than half of that, and a late
			// timer only makes it longer. Retrying at the initial interval
			// fails the lower bound from the third gap on; growing past
			// MaxBackoff fails the upper one, which leaves room for a busy
			// machine, by the ninth (uncapped, at least 640 ms).
			base := minBackoff
			for i := 1; i < len(times); i++ {
				gap := times[i].Sub(times[i-1])
				if gap < base/2 {
					t.Errorf("gap %d is %v, want at least %v (exponential backoff from %v)", i, gap, base/2, minBackoff)
				}
				if limit := maxBackoff*3/2 + 500*time.Millisecond; gap > limit {
					t.Errorf("gap %d is %v, want at most %v (MaxBackoff %v, jittered, plus scheduling)", i, gap, limit, maxBackoff)
				}
				base = min(2*base, maxBackoff)
			}
		})
	}
}

func TestAnUpstreamAnswering503EndsInERRORWhenGiveUpHasPassedNotBefore(t *testing.T) {
	const giveUp = 300 * time.Millisecond
	at := make(chan time.Time, 1) // the first attempt only
	h := NewHub(answering503(t, at), Config{GiveUp: giveUp, MinBackoff: 10 * time.Millisecond, MaxBackoff: time.Second, Buffer: 4}, &counts{}, slog.New(slog.DiscardHandler))
	t.Cleanup(h.Close)
	s := h.Subscribe("o", "c", 0, nil)
	defer s.Close()
	evs := drainAll(t, s)
	first := <-at
	if len(evs) != 1 || evs[0].ErrorCode() != "UPSTREAM_UNAVAILABLE" || !evs[0].End {
		t.Fatalf("got %+v, want one final ERROR UPSTREAM_UNAVAILABLE", evs)
	}
	// The delay before the attempt that would come next is up to 1.5 s
	// here: giving up because it would end past GiveUp is giving up early.
	if took := time.Since(first); took < giveUp {
		t.Errorf("ERROR %v after the first failed attempt, want GiveUp %v to have passed", took, giveUp)
	}
}
