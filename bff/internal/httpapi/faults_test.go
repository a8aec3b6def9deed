package httpapi_test

import (
	"strings"
	"testing"
	"time"

	"github.com/exportstream/exportstream/bff/internal/httpapi"
	"github.com/exportstream/exportstream/bff/internal/relay"
	"github.com/exportstream/exportstream/internal/faultproxy"
	"github.com/exportstream/exportstream/internal/testenv"
)

// behindFaults starts the real backend (with a short heartbeat) behind a
// fault-injecting proxy and a BFF in front of the proxy.
func behindFaults(t *testing.T) (*faultproxy.Proxy, string) {
	t.Helper()
	return behindFaultsIdle(t, 400*time.Millisecond)
}

// behindFaultsIdle is behindFaults with the relay's idle timeout: a
// stream silent this long (the backend heartbeats every 100 ms) is taken
// for a stalled link.
func behindFaultsIdle(t *testing.T, idle time.Duration) (*faultproxy.Proxy, string) {
	t.Helper()
	be := startBackend(t, "-heartbeat", "100ms", "-progress-interval", "50ms", "-retry", "20ms")
	p, err := faultproxy.New(strings.TrimPrefix(be.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	bff := startBFFWith(t, "http://"+p.Addr(), "", func(r *relay.Config, _ *httpapi.Config) {
		r.GiveUp, r.IdleTimeout = 30*time.Second, idle
	})
	return p, bff
}

// endsCompletedInOrder reads a stream to its end and checks it ends with
// exactly one final event, COMPLETED, with ids strictly increasing.
func endsCompletedInOrder(t *testing.T, evs []event) {
	t.Helper()
	final := 0
	for k, ev := range evs {
		if k > 0 && ev.job.Seq <= evs[k-1].job.Seq {
			t.Errorf("seq %d after %d", ev.job.Seq, evs[k-1].job.Seq)
		}
		switch ev.job.Status {
		case "COMPLETED", "FAILED", "CANCELLED", "ERROR":
			final++
		}
	}
	if len(evs) == 0 || final != 1 || evs[len(evs)-1].job.Status != "COMPLETED" {
		t.Fatalf("%d events, %d final, want exactly one COMPLETED last: %v", len(evs), final, evs)
	}
}

func TestConnectionsResetMidEventAreResumedWithoutLossOrDuplicates(t *testing.T) {
	p, bff := behindFaults(t)
	// Every backend connection is cut after 1,200 bytes: the retry field,
	// two or so events, then half of the next one.
	p.ResetAfter(1200)
	j := create(t, bff, `{"rows":5000,"durationMs":2500}`)
	evs := openStream(t, bff+"/api/exports/"+j.Code+"/events", nil).rest(t)
	endsCompletedInOrder(t, evs)
	// The create and the first stream share a connection at most; the
	// events alone are far more than 1,200 bytes, so the stream was cut.
	if n := len(p.Accepted()); n < 2 || len(evs) < 5 {
		t.Errorf("the proxy forwarded %d connections for %d events, want the stream cut and resumed", n, len(evs))
	}
}

func TestAStalledLinkIsDetectedByMissingHeartbeatsAndResumed(t *testing.T) {
	testenv.Slow(t)
	p, bff := behindFaults(t)
	j := create(t, bff, `{"rows":2000,"durationMs":2000}`)
	s := openStream(t, bff+"/api/exports/"+j.Code+"/events", nil)
	first := s.next(t)
	for len(p.Accepted()) > 0 { // forget the connections made so far
		<-p.Accepted()
	}
	p.Blackhole(true)
	<-p.Accepted() // the relay noticed the silence and reconnected on a new connection
	p.Blackhole(false)
	endsCompletedInOrder(t, append([]event{first}, s.rest(t)...))
}

func TestHalfASecondOfLatencyOnlyDelaysEvents(t *testing.T) {
	// The idle timeout above the latency, as deployed (45 s against a
	// 15 s heartbeat): each chunk the proxy passes on comes 500 ms after
	// the last, and a relay that took that for a stalled link would never
	// get its subscriptions made between two reconnects.
	p, bff := behindFaultsIdle(t, 2*time.Second)
	j := create(t, bff, `{"rows":500,"durationMs":500}`)
	p.SetLatency(500 * time.Millisecond)
	endsCompletedInOrder(t, openStream(t, bff+"/api/exports/"+j.Code+"/events", nil).rest(t))
}
