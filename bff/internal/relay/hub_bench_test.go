package relay

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	sse "github.com/tmaxmax/go-sse"
)

// The hot paths of the relay, measured with `go test -bench . -benchmem`
// (benchstat-comparable). BENCHMARKS.md at the root records the figures and
// the end-to-end runs of bench/.

// benchJob is a realistic IN_PROGRESS snapshot as the backend sends it.
const benchJob = `{"code":"6f1c0b1e-4b7a-4c55-9c1e-3f0a8d2b7c11","status":"IN_PROGRESS","progress":42,` +
	`"rowsDone":4200,"rowsTotal":10000,"seq":43,"createdAt":"2026-01-02T03:04:05.123456789Z",` +
	`"updatedAt":"2026-01-02T03:04:09.987654321Z"}`

func benchFrame(seq int) string {
	return fmt.Sprintf("id: %d\ndata: %s\n\n", seq, benchJob)
}

type benchStats struct{}

func (benchStats) UpstreamOpened()    {}
func (benchStats) UpstreamClosed()    {}
func (benchStats) UpstreamConnected() {}
func (benchStats) SnapshotDropped()   {}

// pipeUpstream is a backend whose one event stream is an in-memory pipe:
// the benchmark writes SSE frames into it and the hub's real upstream
// reader (go-sse's client) parses and fans them out. No sockets, so the
// figures are the relay's own cost.
type pipeUpstream struct {
	pr *io.PipeReader
	pw *io.PipeWriter
}

func newPipeUpstream() *pipeUpstream {
	pr, pw := io.Pipe()
	return &pipeUpstream{pr: pr, pw: pw}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func (p *pipeUpstream) EventsRequest(ctx context.Context, _, code string) (*http.Request, error) {
	return http.NewRequestWithContext(ctx, http.MethodGet, "http://backend.invalid/v1/exports/"+code+"/events", nil)
}

func (p *pipeUpstream) HTTPClient() *http.Client {
	return &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		return &http.Response{
			StatusCode: http.StatusOK,
			Header:     http.Header{"Content-Type": {"text/event-stream"}},
			Body:       p.pr,
			Request:    r,
		}, nil
	})}
}

// fanOut is one hub, one upstream and n subscribers of it.
type fanOut struct {
	hub  *Hub
	up   *pipeUpstream
	subs []*Subscription
}

func newFanOut(tb testing.TB, n int) *fanOut {
	tb.Helper()
	f := &fanOut{up: newPipeUpstream()}
	f.hub = NewHub(f.up, Config{GiveUp: time.Minute, MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond, Buffer: 64, Linger: 0},
		benchStats{}, slog.New(slog.DiscardHandler))
	for range n {
		f.subs = append(f.subs, f.hub.Subscribe("owner", "6f1c0b1e-4b7a-4c55-9c1e-3f0a8d2b7c11", 0, nil))
	}
	tb.Cleanup(func() {
		for _, s := range f.subs {
			s.Close()
		}
		_ = f.up.pw.Close()
		f.hub.Close()
	})
	return f
}

// deliver sends one event upstream and waits until every subscriber has
// drained it: one op is one event delivered to len(subs) subscribers.
func (f *fanOut) deliver(tb testing.TB, frame []byte) {
	if _, err := f.up.pw.Write(frame); err != nil {
		tb.Fatal(err)
	}
	for _, s := range f.subs {
		for got := 0; got == 0; {
			<-s.Ready()
			evs, _ := s.Drain()
			got = len(evs)
		}
	}
}

// frames returns n distinct frames (seqs 1..n) so Last-Event-ID filtering
// never drops one.
func frames(n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = []byte(benchFrame(i + 1))
	}
	return out
}

// BenchmarkHubFanOut: one upstream event parsed and delivered to 1, 100
// and 10,000 subscribers of the same job (queue push + signal + drain).
func BenchmarkHubFanOut(b *testing.B) {
	for _, n := range []int{1, 100, 10_000} {
		b.Run(fmt.Sprintf("subscribers=%d", n), func(b *testing.B) {
			f := newFanOut(b, n)
			fr := frames(b.N + 1)
			f.deliver(b, fr[0]) // warm up: the upstream is connected
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				f.deliver(b, fr[i+1])
			}
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/delivery")
		})
	}
}

// BenchmarkUpstreamParse: the backend's SSE bytes to relay Events (go-sse's
// parser, then reading seq and the terminal status for routing).
func BenchmarkUpstreamParse(b *testing.B) {
	const perOp = 100
	var buf strings.Builder
	for i := range perOp {
		buf.WriteString(benchFrame(i + 1))
	}
	stream := []byte(buf.String())
	b.SetBytes(int64(len(stream)))
	b.ReportAllocs()
	for b.Loop() {
		n := 0
		for ev, err := range sse.Read(bytes.NewReader(stream), nil) {
			if err != nil {
				b.Fatal(err)
			}
			_ = newUpstreamEvent(ev.LastEventID, ev.Data)
			n++
		}
		if n != perOp {
			b.Fatalf("parsed %d events, want %d", n, perOp)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*perOp), "ns/event")
}
