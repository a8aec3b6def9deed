package stream_test

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/exportstream/exportstream/bff/internal/stream"
)

// benchJob is a progress snapshot the size the backend sends.
var benchJob = `{"code":"6f1c0b1e-4b7a-4c55-9c1e-3f0a8d2b7c11","status":"IN_PROGRESS","progress":42,"rowsDone":420,"rows":1000,"seq":43,` +
	`"createdAt":"2026-11-25T10:00:00.000Z","updatedAt":"2026-11-25T10:00:04.200Z","request":{"rows":1000,"durationMs":10000}}`

// BenchmarkAppendEvent: one event encoded as a browser gets it.
func BenchmarkAppendEvent(b *testing.B) {
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		buf = stream.AppendEvent(buf[:0], "43", benchJob)
	}
	b.SetBytes(int64(len(buf)))
}

// counted is a Source that counts the events it hands out.
type counted struct {
	mu      sync.Mutex
	wake    func()
	pending int
	filled  *atomic.Int64
}

func (c *counted) Start(wake func()) { c.mu.Lock(); c.wake = wake; c.mu.Unlock() }
func (c *counted) Closed()           {}
func (c *counted) Fill(buf []byte) ([]byte, bool) {
	c.mu.Lock()
	n := c.pending
	c.pending = 0
	c.mu.Unlock()
	for range n {
		buf = stream.AppendEvent(buf, "43", benchJob)
	}
	c.filled.Add(int64(n))
	return buf, false
}

func (c *counted) send() {
	c.mu.Lock()
	c.pending++
	wake := c.wake
	c.mu.Unlock()
	if wake != nil {
		wake()
	}
}

// BenchmarkPoolFanOut: one event to every stream of the pool, over real
// loopback sockets read by the benchmark (on the same cores); ns/delivery
// is wall time per event per stream, one write(2) each.
func BenchmarkPoolFanOut(b *testing.B) {
	for _, n := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("streams=%d", n), func(b *testing.B) {
			pool, err := stream.NewPool(stream.Config{Heartbeat: time.Hour})
			if err != nil {
				b.Fatal(err)
			}
			defer pool.Close()
			var filled atomic.Int64
			srcs := make(chan *counted, n)
			url := serve(b, pool, func() stream.Source {
				c := &counted{filled: &filled}
				srcs <- c
				return c
			})
			var all []*counted
			for range n {
				conn, _ := dialRaw(b, url)
				go func() { _, _ = io.Copy(io.Discard, conn) }()
				all = append(all, <-srcs)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				for _, c := range all {
					c.send()
				}
				for want := int64(i+1) * int64(n); filled.Load() < want; {
					time.Sleep(10 * time.Microsecond)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/delivery")
		})
	}
}

// dialRaw is dial for benchmarks: the head is read and checked loosely.
func dialRaw(b *testing.B, url string) (io.ReadCloser, string) {
	b.Helper()
	conn, err := netDial(url)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = conn.Close() })
	head := make([]byte, 4096)
	k, err := conn.Read(head)
	if err != nil || !strings.HasPrefix(string(head[:k]), "HTTP/1.1 200") {
		b.Fatalf("head %q: %v", head[:k], err)
	}
	return conn, string(head[:k])
}
