package relay

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/exportstream/exportstream/bff/internal/backend"
	"github.com/exportstream/exportstream/bff/internal/relay/relaytest"
	"github.com/exportstream/exportstream/internal/testenv"
)

// What the hub does when the stream drops, stalls or is refused, and when
// subscription calls fail.

func TestAfterADropEveryJobIsSubscribedAgainFromItsLastSeqWithNoGapNoDuplicate(t *testing.T) {
	const jobs = 30
	b, h := startHub(t, Config{})
	subs := make(map[string]*Subscription)
	had := make(map[string]int64) // the last seq each job got before the drop
	for i := range jobs {
		owner, code := fmt.Sprintf("o%d", i%7), fmt.Sprintf("c%d", i)
		subs[owner+"/"+code] = h.Subscribe(owner, code, 0, nil)
		defer subs[owner+"/"+code].Close()
		had[owner+"/"+code] = int64(i % 5) // 0: nothing yet
	}
	first := b.NextStream(t)
	for range jobs {
		b.NextCall(t)
	}
	got := make(map[string][]Event)
	for key, n := range had {
		owner, code, _ := strings.Cut(key, "/")
		for seq := int64(1); seq <= n; seq++ {
			first.Envelope(relaytest.Snapshot(owner, code, seq, "IN_PROGRESS"))
		}
		got[key] = readN(t, subs[key], int(n))
	}
	first.Drop()

	second := b.NextStream(t)
	for range jobs {
		c := b.NextCall(t)
		key := c.Owner + "/" + c.Code
		if c.Method != http.MethodPut || c.Stream != second.ID {
			t.Errorf("after the drop: %v, want a PUT on the new stream %s", c, second.ID)
		}
		if want, ok := had[key]; !ok || c.After != want {
			t.Errorf("%s subscribed again from %d, want from its last seq %d", key, c.After, want)
		}
		// The backend sends what is newer than the seq it was given.
		second.Envelope(relaytest.Snapshot(c.Owner, c.Code, c.After+1, "IN_PROGRESS"), relaytest.Snapshot(c.Owner, c.Code, c.After+2, "COMPLETED"))
	}
	for key, s := range subs {
		evs := append(got[key], drainAll(t, s)...)
		var want []int64
		for seq := int64(1); seq <= had[key]+2; seq++ {
			want = append(want, seq)
		}
		if !reflect.DeepEqual(seqs(evs), want) {
			t.Errorf("%s got seqs %v across the drop, want %v", key, seqs(evs), want)
		}
	}
}

// checkBackoff checks gaps between attempts: the i-th delay is jittered
// in [d/2, d] for d = min(minBackoff·2^i, maxBackoff), and a late timer
// only makes it longer. Retrying at the initial interval fails the lower
// bound from the third gap on; growing past maxBackoff fails the upper
// one, which leaves room for a busy machine, by the ninth (uncapped, at
// least 640 ms).
func checkBackoff(t *testing.T, times []time.Time, minBackoff, maxBackoff time.Duration) {
	t.Helper()
	base := minBackoff
	for i := 1; i < len(times); i++ {
		gap := times[i].Sub(times[i-1])
		if gap < base/2 {
			t.Errorf("gap %d is %v, want at least %v (exponential backoff from %v)", i, gap, base/2, minBackoff)
		}
		if limit := maxBackoff + 500*time.Millisecond; gap > limit {
			t.Errorf("gap %d is %v, want at most %v (MaxBackoff %v plus scheduling)", i, gap, limit, maxBackoff)
		}
		base = min(2*base, maxBackoff)
	}
}

// droppingConnections accepts every connection and closes it at once,
// before any answer; attempts receives the time of each.
func droppingConnections(t *testing.T, attempts chan<- time.Time) string {
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
	return "http://" + ln.Addr().String()
}

func TestTheStreamIsReconnectedWithGrowingJitteredGapsBoundedByMaxBackoff(t *testing.T) {
	const minBackoff, maxBackoff, attempts = 5 * time.Millisecond, 40 * time.Millisecond, 11
	cfg := Config{MinBackoff: minBackoff, MaxBackoff: maxBackoff}
	t.Run("a backend answering 503 after a drop", func(t *testing.T) {
		b, h := startHub(t, cfg)
		defer h.Subscribe("o", "c", 0, nil).Close()
		conn := b.NextStream(t)
		b.RefuseStreams(http.StatusServiceUnavailable) // a backend restarting
		conn.Drop()
		checkBackoff(t, b.WaitAttempts(t, 1+attempts)[1:], minBackoff, maxBackoff)
	})
	t.Run("a backend dropping connections", func(t *testing.T) {
		at := make(chan time.Time, attempts)
		be, err := backend.New(droppingConnections(t, at), "")
		if err != nil {
			t.Fatal(err)
		}
		h, _ := newHubOn(t, be, cfg, slog.New(slog.DiscardHandler))
		defer h.Subscribe("o", "c", 0, nil).Close()
		var times []time.Time
		for len(times) < attempts {
			select {
			case ts := <-at:
				times = append(times, ts)
			case <-time.After(wait):
				t.Fatalf("%d attempts in %v, want %d", len(times), wait, attempts)
			}
		}
		checkBackoff(t, times, minBackoff, maxBackoff)
	})
}

func TestTheBackoffIsDrawnBetweenHalfAndAllOfTheDelay(t *testing.T) {
	const minBackoff, maxBackoff = 10 * time.Millisecond, 80 * time.Millisecond
	for n, d := range []time.Duration{10, 20, 40, 80, 80, 80} {
		d *= time.Millisecond
		lo, hi := d, time.Duration(0)
		for range 1000 {
			b := backoff{min: minBackoff, max: maxBackoff, n: n}
			got := b.next()
			lo, hi = min(lo, got), max(hi, got)
		}
		if lo < d/2 || hi > d {
			t.Errorf("delay %d drawn in [%v, %v], want within [%v, %v]", n, lo, hi, d/2, d)
		}
		if hi-lo < d/4 { // 1,000 uniform draws: a spread under half the range is as good as impossible
			t.Errorf("delay %d drawn in [%v, %v], want it jittered over [%v, %v]", n, lo, hi, d/2, d)
		}
	}
}

func TestASubscriptionAnswered404ReconnectsTheStreamAndSubscribesEveryJobAgain(t *testing.T) {
	b, h := startHub(t, Config{Calls: 1})
	live, first := subscribeTo(t, h, b, "live", 0)
	first.Envelope(relaytest.Snapshot("o", "live", 3, "IN_PROGRESS"))
	readN(t, live, 1)

	// The backend restarted behind the open connection: the stream id is
	// unknown to it now.
	b.Answer(func(c Call) int {
		if c.Stream == first.ID {
			return http.StatusNotFound
		}
		return http.StatusNoContent
	})
	late := h.Subscribe("o", "late", 0, nil)
	defer late.Close()
	within(t, first.Done(), "the hub kept the stream whose id the backend does not know")
	second := b.NextStream(t)
	again := make(map[string]int64)
	for len(again) < 2 {
		c := b.NextCall(t)
		if c.Stream == first.ID {
			continue // calls that raced with the reconnect
		}
		if c.Method != http.MethodPut || c.Stream != second.ID {
			t.Fatalf("after the 404: %v, want PUTs on %s", c, second.ID)
		}
		again[c.Code] = c.After
	}
	if want := map[string]int64{"live": 3, "late": 0}; !reflect.DeepEqual(again, want) {
		t.Errorf("subscribed again from %v, want %v", again, want)
	}
	var onFirst []Call
	for _, c := range b.Calls() {
		if c.Stream == first.ID {
			onFirst = append(onFirst, c)
		}
	}
	if len(onFirst) != 2 {
		t.Errorf("calls on the stream the backend lost: %v, want only live's PUT and the one answered 404", onFirst)
	}
	second.Envelope(relaytest.Snapshot("o", "late", 1, "COMPLETED"), relaytest.Snapshot("o", "live", 4, "COMPLETED"))
	if evs := drainAll(t, late); !reflect.DeepEqual(seqs(evs), []int64{1}) {
		t.Errorf("late got %v, want 1", seqs(evs))
	}
	if evs := drainAll(t, live); !reflect.DeepEqual(seqs(evs), []int64{4}) {
		t.Errorf("live got %v, want 4", seqs(evs))
	}
}

func TestASubscriptionAnswered503IsRetriedWithGrowingGaps(t *testing.T) {
	const minBackoff, maxBackoff, attempts = 5 * time.Millisecond, 40 * time.Millisecond, 11
	b := relaytest.New(t)
	b.Answer(func(Call) int { return http.StatusServiceUnavailable })
	h, _ := newHub(t, b, Config{MinBackoff: minBackoff, MaxBackoff: maxBackoff})
	s := h.Subscribe("o", "c", 0, nil)
	defer s.Close()
	b.NextStream(t)
	var times []time.Time
	for range attempts {
		c := b.NextCall(t)
		if c.Method != http.MethodPut || c.Code != "c" {
			t.Fatalf("unexpected call %v", c)
		}
		times = append(times, c.At)
	}
	checkBackoff(t, times, minBackoff, maxBackoff)
	if len(b.Attempts()) != 1 {
		t.Errorf("%d stream connections, want 1: a 503 is not the stream's fault", len(b.Attempts()))
	}
}

func TestAJobThatStaysUnsubscribedEndsInERRORWhenGiveUpHasPassedNotBefore(t *testing.T) {
	const giveUp = 300 * time.Millisecond
	for _, tc := range []struct {
		name  string
		setup func(*relaytest.Backend)
		// unsubscribed returns when the job stopped being subscribed,
		// given when it was subscribed.
		unsubscribed func(t *testing.T, b *relaytest.Backend, h *Hub, subscribed time.Time) time.Time
	}{
		{
			"the stream refused with 503",
			func(b *relaytest.Backend) { b.RefuseStreams(http.StatusServiceUnavailable) },
			func(_ *testing.T, _ *relaytest.Backend, _ *Hub, subscribed time.Time) time.Time { return subscribed },
		},
		{
			"the subscription answered 503",
			func(b *relaytest.Backend) { b.Answer(func(Call) int { return http.StatusServiceUnavailable }) },
			func(_ *testing.T, _ *relaytest.Backend, _ *Hub, subscribed time.Time) time.Time { return subscribed },
		},
		{
			"the stream dropped and the backend gone",
			func(*relaytest.Backend) {},
			func(t *testing.T, b *relaytest.Backend, h *Hub, _ time.Time) time.Time {
				conn := b.NextStream(t)
				b.NextCall(t)
				waitSubscribed(t, h, "c")
				cut := time.Now() // the hub notices a little later: its clock starts then
				b.Close()
				<-conn.Done()
				return cut
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := relaytest.New(t)
			tc.setup(b)
			h, _ := newHub(t, b, Config{GiveUp: giveUp, MinBackoff: 10 * time.Millisecond, MaxBackoff: time.Second})
			s := h.Subscribe("o", "c", 0, nil)
			defer s.Close()
			since := tc.unsubscribed(t, b, h, time.Now())
			evs := drainAll(t, s)
			if len(evs) != 1 || evs[0].ErrorCode() != "UPSTREAM_UNAVAILABLE" || !evs[0].End || !strings.Contains(evs[0].Data, `"code":"c","status":"ERROR"`) {
				t.Fatalf("got %+v, want one final ERROR UPSTREAM_UNAVAILABLE", evs)
			}
			// The next retry may be due past GiveUp (up to 1 s here):
			// giving up because it would come too late is giving up early.
			if took := time.Since(since); took < giveUp {
				t.Errorf("ERROR %v after the job stopped being subscribed, want GiveUp %v to have passed", took, giveUp)
			}
		})
	}
}

// comeBackAfterADrop drops conn with the backend refusing streams, lets
// the hub try three times, then accepts streams again and returns the new
// connection, once c's PUT came on it, and when conn was dropped. It
// skips the test when the machine took soon or longer to come back.
func comeBackAfterADrop(t *testing.T, b *relaytest.Backend, conn *relaytest.Conn, soon time.Duration) (*relaytest.Conn, time.Time) {
	t.Helper()
	b.RefuseStreams(http.StatusServiceUnavailable)
	conn.Drop()
	dropped := time.Now()
	b.WaitAttempts(t, 3)
	b.RefuseStreams(0)
	conn = b.NextStream(t)
	b.NextCall(t)
	if took := time.Since(dropped); took >= soon {
		t.Skipf("the machine is too slow for this test: the stream came back after %v, want under %v", took, soon)
	}
	return conn, dropped
}

func TestAJobThatComesBackWithinGiveUpDoesNotEndInERROR(t *testing.T) {
	const giveUp = 300 * time.Millisecond
	b, h := startHub(t, Config{GiveUp: giveUp})
	s, conn := subscribeTo(t, h, b, "c", 0)
	conn, _ = comeBackAfterADrop(t, b, conn, giveUp)
	<-time.After(giveUp) // past the deadline that would have ended it
	conn.Envelope(relaytest.Snapshot("o", "c", 1, "COMPLETED"))
	if evs := drainAll(t, s); len(evs) != 1 || evs[0].Seq != 1 || evs[0].ErrorCode() != "" {
		t.Errorf("got %+v, want the job's final snapshot and no ERROR", evs)
	}
}

// The give-up clock restarts at every drop: a job that came back is given
// the whole GiveUp again when the stream drops a second time.
func TestAJobThatCameBackGetsAWholeGiveUpAtItsNextDrop(t *testing.T) {
	const giveUp = 400 * time.Millisecond
	b, h := startHub(t, Config{GiveUp: giveUp})
	s, conn := subscribeTo(t, h, b, "c", 0)
	conn, dropped := comeBackAfterADrop(t, b, conn, giveUp/2)
	<-time.After(time.Until(dropped.Add(3 * giveUp / 4))) // the first drop's deadline is near
	b.RefuseStreams(http.StatusServiceUnavailable)
	conn.Drop()
	again := time.Now()
	evs := drainAll(t, s)
	if len(evs) != 1 || evs[0].ErrorCode() != "UPSTREAM_UNAVAILABLE" {
		t.Fatalf("got %+v, want one final ERROR UPSTREAM_UNAVAILABLE", evs)
	}
	if took := time.Since(again); took < giveUp {
		t.Errorf("ERROR %v after the second drop (%v after the first), want GiveUp %v from the second", took, time.Since(dropped), giveUp)
	}
}

func TestASubscriptionRefusedWith401Or400EndsInERRORAtOnce(t *testing.T) {
	for _, status := range []int{http.StatusUnauthorized, http.StatusBadRequest} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			b := relaytest.New(t)
			b.Answer(func(Call) int { return status })
			h, _ := newHub(t, b, Config{Calls: 1}) // GiveUp a minute: the ERROR is not the deadline's
			s, _ := subscribeTo(t, h, b, "c", 0)
			if evs := drainAll(t, s); len(evs) != 1 || evs[0].ErrorCode() != "UPSTREAM_UNAVAILABLE" {
				t.Errorf("got %+v, want one final ERROR UPSTREAM_UNAVAILABLE", evs)
			}
			b.Answer(nil)
			if calls := callsBefore(t, h, b); len(calls) != 0 {
				t.Errorf("calls after the refusal: %v, want no retry", calls)
			}
		})
	}
}

func TestAStalledStreamIsNoticedByItsSilenceReconnectedAndLoggedAsSilent(t *testing.T) {
	const idle = 100 * time.Millisecond
	b := relaytest.New(t)
	var logs testenv.LogBuffer
	h, _ := newHubOn(t, upstreamOf(t, b), Config{IdleTimeout: idle}, slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	s, stalled := subscribeTo(t, h, b, "c", 0)
	stalled.Envelope(relaytest.Snapshot("o", "c", 1, "IN_PROGRESS"))
	readN(t, s, 1)
	silentSince := time.Now()
	// Then nothing, not even a heartbeat, on an open connection.
	within(t, stalled.Done(), "the hub kept a silent stream")
	if took := time.Since(silentSince); took < idle {
		t.Errorf("the stream was dropped after %v of silence, want at least the idle timeout %v", took, idle)
	}
	fresh := b.NextStream(t)
	if c := b.NextCall(t); c.Stream != fresh.ID || c.After != 1 {
		t.Errorf("after the stall: %v, want PUT on %s from 1", c, fresh.ID)
	}
	fresh.Envelope(relaytest.Snapshot("o", "c", 2, "COMPLETED"))
	if evs := drainAll(t, s); !reflect.DeepEqual(seqs(evs), []int64{2}) {
		t.Errorf("got %v after the stall, want the final 2", seqs(evs))
	}
	if got := logs.String(); !strings.Contains(got, errUpstreamSilent.Error()) {
		t.Errorf("the reconnection log does not name the silence:\n%s", got)
	}
}

func TestAStreamThatKeepsSendingHeartbeatsIsNotTakenForASilentOne(t *testing.T) {
	const idle = 300 * time.Millisecond
	b, h := startHub(t, Config{IdleTimeout: idle})
	s, conn := subscribeTo(t, h, b, "c", 0)
	tick := time.NewTicker(idle / 5) // the heartbeat interval
	defer tick.Stop()
	for end := time.Now().Add(4 * idle); time.Now().Before(end); <-tick.C {
		if !conn.Ping() {
			t.Fatalf("the hub hung up on a stream sending heartbeats every %v (idle timeout %v)", idle/5, idle)
		}
	}
	conn.Envelope(relaytest.Snapshot("o", "c", 1, "COMPLETED"))
	if evs := drainAll(t, s); len(evs) != 1 || evs[0].Seq != 1 {
		t.Errorf("got %+v, want the final snapshot on the same stream", evs)
	}
	if n := len(b.Attempts()); n != 1 {
		t.Errorf("%d stream connections, want 1: it never went quiet", n)
	}
}

// tlsUpstream is the backend client with the TLS fake's roots.
type tlsUpstream struct {
	*backend.Client
	client *http.Client
}

func (u tlsUpstream) HTTPClient() *http.Client { return u.client }

// With an idle timeout the hub still reaches the backend through the
// client it was given (here its TLS roots), not a default one.
func TestTheIdleTimeoutKeepsTheBackendClientsTransport(t *testing.T) {
	b := relaytest.NewTLS(t)
	h, _ := newHubOn(t, tlsUpstream{upstreamOf(t, b), b.Client()}, Config{IdleTimeout: time.Minute, GiveUp: time.Second}, slog.New(slog.DiscardHandler))
	s, conn := subscribeTo(t, h, b, "c", 0)
	conn.Envelope(relaytest.Snapshot("o", "c", 1, "COMPLETED"))
	if evs := drainAll(t, s); len(evs) != 1 || evs[0].Seq != 1 || evs[0].ErrorCode() != "" {
		t.Errorf("got %+v, want the COMPLETED snapshot from the TLS backend", evs)
	}
}

func TestAStreamThatDoesNotSayItsIDFirstIsReconnected(t *testing.T) {
	b, h := startHub(t, Config{})
	_, conn := subscribeTo(t, h, b, "c", 0)
	conn.Send("event: stream\ndata: {}\n\n") // an id it cannot use
	within(t, conn.Done(), "the hub kept a stream with no id")
	b.NextStream(t)
	if c := b.NextCall(t); c.Code != "c" {
		t.Errorf("after the reconnect: %v, want PUT c", c)
	}
}
