//go:build unix

package stream_test

// Tests added from mutation testing (make mutation, RELIABILITY.md): each
// names the surviving mutants it kills, and tests what a browser reading
// the stream sees, on loopback connections like the rest.

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/exportstream/exportstream/bff/internal/stream"
)

// Kills sse.go:21 (i < 0 as i <= 0), sse.go:27:29 (i+1 < len as <=) and
// sse.go:27:26 (i+1 as i-1): data that starts with a line break or ends
// with a carriage return is framed as an EventSource reads it.
func TestDataWithLineBreaksAtItsEdgesIsFramedLineByLine(t *testing.T) {
	for _, c := range []struct{ data, want string }{
		{"\nafter a break", "data: \ndata: after a break\n\n"},
		{"\r\nafter a CRLF", "data: \ndata: after a CRLF\n\n"},
		{"ends in CR\r", "data: ends in CR\ndata: \n\n"},
		{"\r", "data: \ndata: \n\n"},
	} {
		if got := string(stream.AppendEvent(nil, "", c.data)); got != c.want {
			t.Errorf("AppendEvent(%q) = %q, want %q", c.data, got, c.want)
		}
	}
}

// Kills pool.go:186:29 (heartbeat/4 as *4), pool.go:196:28 (both mutants
// of now - heartbeat) and pool.go:200:27 (the quiet test negated): a quiet
// stream gets a heartbeat about one interval after its last write, not
// several intervals late and not at every tick of the janitor.
func TestHeartbeatsComeAboutOneIntervalApart(t *testing.T) {
	const heartbeat, pings = 200 * time.Millisecond, 4
	_, url, opened := server(t, stream.Config{Heartbeat: heartbeat})
	start := time.Now() // before the stream opens: the bounds below are measured from here
	conn, br := dial(t, url)
	<-opened
	for range pings {
		if got := readBlock(t, conn, br); got != ": ping\n" {
			t.Fatalf("got %q, want a heartbeat", got)
		}
	}
	// The janitor looks every quarter of the interval, so ping k is written
	// between k intervals (less the tick the stream's clock may lag) and
	// k and a quarter intervals after the stream opened. A reader can only
	// be late, so the lower bound is exact; the upper one has a second of
	// slack for a loaded machine.
	took := time.Since(start)
	if low, high := pings*heartbeat-heartbeat/4, pings*heartbeat*5/4+time.Second; took < low || took > high {
		t.Errorf("%d heartbeats took %v, want between %v and %v (one about every %v)", pings, took, low, high, heartbeat)
	}
}

// Kills pool.go:186:34 (the 5 ms floor of the janitor's tick made 0): a
// heartbeat shorter than the floor (the BFF accepts any positive one) is
// paced by the floor instead of crashing the pool.
func TestAHeartbeatShorterThanTheJanitorsTickStillWorks(t *testing.T) {
	_, url, opened := server(t, stream.Config{Heartbeat: time.Nanosecond})
	conn, br := dial(t, url)
	<-opened
	for range 3 {
		if got := readBlock(t, conn, br); got != ": ping\n" {
			t.Fatalf("got %q, want a heartbeat", got)
		}
	}
}

// fillSignal is a Source that serves a fixed set of events, and says when
// the pool has taken them.
type fillSignal struct {
	mu    sync.Mutex
	out   []byte
	taken chan struct{}
}

func (f *fillSignal) Start(func()) {}

func (f *fillSignal) Fill(buf []byte) ([]byte, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.out == nil {
		return buf, false
	}
	buf = append(buf, f.out...)
	f.out = nil
	close(f.taken)
	return buf, true
}

func (*fillSignal) Closed() {}

// Kills pool.go:345:34 (WriteTimeout > 0 as >= 0): with no write timeout
// configured (0: never), a browser that falls behind is waited for, not
// cut off; it gets every byte once it reads again.
func TestWithoutAWriteTimeoutABrowserThatFallsBehindGetsEverything(t *testing.T) {
	pool, err := stream.NewPool(stream.Config{Heartbeat: time.Hour, Writers: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	const events = 16
	big := strings.Repeat("x", 1<<20)
	src := &fillSignal{taken: make(chan struct{})}
	for i := range events {
		src.out = stream.AppendEvent(src.out, string(rune('a'+i%26)), big)
	}
	url := serve(t, pool, func() stream.Source { return src })
	// A browser with a small receive window (no autotuning): the 16 MiB are
	// far more than the socket buffers hold, so the pool's writer fills
	// them and leaves the rest to a stalled write, whoever reads how fast.
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 8<<10)
		}); err != nil {
			return err
		}
		return serr
	}}
	conn, err := d.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	if _, err := io.WriteString(conn, "GET /events HTTP/1.1\r\nHost: test\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("head: %v %v", resp, err)
	}
	if got := readBlock(t, conn, br); got != "retry: 1500\n" {
		t.Fatalf("first block %q, want the retry field", got)
	}
	select {
	case <-src.taken:
	case <-time.After(10 * time.Second):
		t.Fatal("the pool never took the events")
	}
	for i := range events {
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		want := "id: " + string(rune('a'+i%26)) + "\ndata: " + big + "\n"
		if got := readBlock(t, conn, br); got != want {
			t.Fatalf("event %d: %d bytes, want %d", i, len(got), len(want))
		}
	}
	if rest, err := io.ReadAll(br); err != nil || len(rest) != 0 {
		t.Fatalf("after the last event: %d bytes, %v; want the end of the stream", len(rest), err)
	}
}

// A browser that keeps reading is written by the writers directly, never
// through the stalled path's goroutine and blocking write (which would
// deliver the same bytes, one goroutine per stream later).
func TestABrowserThatKeepsReadingNeverStalls(t *testing.T) {
	var stalls atomic.Int64
	_, url, opened := server(t, stream.Config{Heartbeat: time.Minute, WriteTimeout: 10 * time.Second, Stalled: func() { stalls.Add(1) }})
	conn, br := dial(t, url)
	f := <-opened
	data := strings.Repeat("x", 1000)
	for i := range 200 {
		f.send(strconv.Itoa(i), data, false)
		if got := readBlock(t, conn, br); !strings.Contains(got, "id: "+strconv.Itoa(i)+"\n") {
			t.Fatalf("event %d: got %q", i, got)
		}
	}
	if n := stalls.Load(); n != 0 {
		t.Errorf("%d of 200 writes to a reading browser stalled, want 0", n)
	}
}
