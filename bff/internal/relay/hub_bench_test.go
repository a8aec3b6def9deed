package relay

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
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

const (
	benchOwner = "8d1f3c2a-5b6e-4f70-9a81-b2c3d4e5f607"
	benchCode  = "6f1c0b1e-4b7a-4c55-9c1e-3f0a8d2b7c11"
)

// benchFrame is the job's event seq on the multiplexed stream.
func benchFrame(seq int) string {
	env, _ := json.Marshal(struct {
		Owner string `json:"owner"`
		Code  string `json:"code"`
		ID    string `json:"id"`
		Data  string `json:"data"`
	}{benchOwner, benchCode, fmt.Sprint(seq), benchJob})
	return "data: " + string(env) + "\n\n"
}

type benchStats struct{}

func (benchStats) TopicOpened()          {}
func (benchStats) TopicClosed()          {}
func (benchStats) UpstreamConnected()    {}
func (benchStats) UpstreamDisconnected() {}
func (benchStats) SnapshotDropped()      {}

// pipeUpstream is a backend whose multiplexed stream is an in-memory
// pipe and whose subscription calls all answer 204: the benchmark writes
// frames into the pipe and the hub's real reader (go-sse's parser, the
// envelope decoder) routes and fans them out. No sockets, so the figures
// are the relay's own cost.
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

func (p *pipeUpstream) StreamRequest(ctx context.Context) (*http.Request, error) {
	return http.NewRequestWithContext(ctx, http.MethodGet, "http://backend.invalid/v1/events", nil)
}

func (p *pipeUpstream) SubscriptionRequest(ctx context.Context, method, stream, _, code string, _ int64) (*http.Request, error) {
	return http.NewRequestWithContext(ctx, method, "http://backend.invalid/v1/events/"+url.PathEscape(stream)+"/subscriptions/"+url.PathEscape(code), nil)
}

func (p *pipeUpstream) HTTPClient() *http.Client {
	return &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if r.Method != http.MethodGet {
			return &http.Response{StatusCode: http.StatusNoContent, Body: http.NoBody, Request: r}, nil
		}
		return &http.Response{
			StatusCode: http.StatusOK,
			Header:     http.Header{"Content-Type": {"text/event-stream"}},
			Body:       p.pr,
			Request:    r,
		}, nil
	})}
}

// fanOut is one hub, its stream and n subscribers of one job.
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
		f.subs = append(f.subs, f.hub.Subscribe(benchOwner, benchCode, 0, nil))
	}
	tb.Cleanup(func() {
		for _, s := range f.subs {
			s.Close()
		}
		_ = f.up.pw.Close()
		f.hub.Close()
	})
	if _, err := io.WriteString(f.up.pw, "retry: 10\n\nevent: stream\ndata: {\"stream\":\"s1\"}\n\n"); err != nil {
		tb.Fatal(err)
	}
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

// BenchmarkHubFanOut: one event of the multiplexed stream parsed, routed
// and delivered to 1, 100 and 10,000 subscribers of the same job (queue
// push + signal + drain).
func BenchmarkHubFanOut(b *testing.B) {
	for _, n := range []int{1, 100, 10_000} {
		b.Run(fmt.Sprintf("subscribers=%d", n), func(b *testing.B) {
			f := newFanOut(b, n)
			fr := frames(b.N + 1)
			f.deliver(b, fr[0]) // warm up: the stream is read
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

// BenchmarkUpstreamParse: the multiplexed stream's bytes to relay Events
// (go-sse's parser, then the envelope: owner and code for routing, the
// job event's fields, its seq).
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
			e, err := parseEnvelope(ev.Data)
			if err != nil {
				b.Fatal(err)
			}
			if _, ok := eventOf(e); ok {
				n++
			}
		}
		if n != perOp {
			b.Fatalf("parsed %d events, want %d", n, perOp)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*perOp), "ns/event")
}
