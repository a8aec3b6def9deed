package stream_test

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/exportstream/exportstream/bff/internal/stream"
)

// feed is a Source fed by the test.
type feed struct {
	mu     sync.Mutex
	wake   func()
	out    []byte
	done   bool
	closed chan struct{}
}

func newFeed() *feed { return &feed{closed: make(chan struct{})} }

func (f *feed) Start(wake func()) {
	f.mu.Lock()
	f.wake = wake
	f.mu.Unlock()
}

func (f *feed) Fill(buf []byte) ([]byte, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	buf = append(buf, f.out...)
	f.out = f.out[:0]
	return buf, f.done
}

func (f *feed) Closed() { close(f.closed) }

// send queues an event and wakes the stream.
func (f *feed) send(id, data string, end bool) {
	f.mu.Lock()
	f.out = stream.AppendEvent(f.out, id, data)
	f.done = end
	wake := f.wake
	f.mu.Unlock()
	if wake != nil { // not yet: the stream's first flush takes it
		wake()
	}
}

func (f *feed) waitClosed(t *testing.T, why string) {
	t.Helper()
	select {
	case <-f.closed:
	case <-time.After(10 * time.Second):
		t.Fatalf("the stream was not closed after %s", why)
	}
}

// server serves every request as a stream of a new feed, handed to opened.
func server(t *testing.T, cfg stream.Config) (*stream.Pool, string, chan *feed) {
	t.Helper()
	pool, err := stream.NewPool(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	opened := make(chan *feed, 1000)
	url := serve(t, pool, func() stream.Source {
		f := newFeed()
		opened <- f
		return f
	})
	return pool, url, opened
}

// serve streams every request from a new source of pool.
func serve(tb testing.TB, pool *stream.Pool, newSource func() stream.Source) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if err := pool.Open(w, stream.Head(w.Header(), 1500*time.Millisecond), newSource()); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
		}
	}))
	tb.Cleanup(func() {
		pool.Close()
		srv.Close()
	})
	return srv.URL
}

// netDial connects to url and sends a stream request.
func netDial(url string) (net.Conn, error) {
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		return nil, err
	}
	if _, err := io.WriteString(conn, "GET /events HTTP/1.1\r\nHost: test\r\n\r\n"); err != nil {
		_ = conn.Close()
		return nil, err
	}
	return conn, nil
}

// dial opens a stream as a bare TCP client and reads its head.
func dial(t *testing.T, url string) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := netDial(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" || !resp.Close {
		t.Fatalf("head: %d %v close=%v", resp.StatusCode, resp.Header, resp.Close)
	}
	if line := readBlock(t, conn, br); line != "retry: 1500\n" {
		t.Fatalf("first block %q, want the retry field", line)
	}
	return conn, br
}

// readBlock reads up to the next blank line, within 10 s.
func readBlock(t *testing.T, conn net.Conn, br *bufio.Reader) string {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	var b strings.Builder
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("read: %v after %q", err, b.String())
		}
		if line == "\n" {
			return b.String()
		}
		b.WriteString(line)
	}
}

func TestEventsArriveInOrderAndTheStreamEndsWhenTheSourceIsDone(t *testing.T) {
	pool, url, opened := server(t, stream.Config{Heartbeat: time.Minute})
	conn, br := dial(t, url)
	f := <-opened
	for i := range 3 {
		f.send(strings.Repeat("7", i+1), `{"n":`+strings.Repeat("7", i+1)+`}`, i == 2)
	}
	for i := range 3 {
		want := "id: " + strings.Repeat("7", i+1) + "\ndata: {\"n\":" + strings.Repeat("7", i+1) + "}\n"
		if got := readBlock(t, conn, br); got != want {
			t.Fatalf("event %d: %q, want %q", i, got, want)
		}
	}
	if rest, err := io.ReadAll(br); err != nil || len(rest) != 0 {
		t.Fatalf("after the last event: %q, %v; want the connection closed", rest, err)
	}
	f.waitClosed(t, "the source said done")
	if pool.Len() != 0 {
		t.Fatalf("%d streams open after the last one ended, want 0", pool.Len())
	}
}

func TestAHangUpIsNoticedWithoutWritingAnything(t *testing.T) {
	pool, url, opened := server(t, stream.Config{Heartbeat: time.Hour})
	conn, _ := dial(t, url)
	f := <-opened
	if pool.Len() != 1 {
		t.Fatalf("%d streams open, want 1", pool.Len())
	}
	_ = conn.Close()
	f.waitClosed(t, "the browser hung up")
	if pool.Len() != 0 {
		t.Fatalf("%d streams open after the hang-up, want 0", pool.Len())
	}
}

func TestAQuietStreamGetsHeartbeats(t *testing.T) {
	_, url, opened := server(t, stream.Config{Heartbeat: 50 * time.Millisecond})
	conn, br := dial(t, url)
	<-opened
	for range 3 {
		if got := readBlock(t, conn, br); got != ": ping\n" {
			t.Fatalf("got %q, want a heartbeat", got)
		}
	}
}

func TestIdleStreamsHoldNoGoroutines(t *testing.T) {
	_, url, opened := server(t, stream.Config{Heartbeat: time.Hour})
	before := runtime.NumGoroutine()
	const n = 200
	for range n {
		dial(t, url)
		<-opened
	}
	// The test's own side of each connection holds no goroutine either
	// (bare conns), so any growth would be the pool's.
	if after := runtime.NumGoroutine(); after > before+5 {
		t.Fatalf("%d goroutines with %d idle streams open, %d before: want no goroutine per stream", after, n, before)
	}
}

func TestABrowserThatStopsReadingIsCutOffAndDoesNotHoldUpTheOthers(t *testing.T) {
	var slow atomic.Int32
	_, url, opened := server(t, stream.Config{Heartbeat: time.Hour, WriteTimeout: 300 * time.Millisecond, Writers: 1,
		SlowDisconnect: func() { slow.Add(1) }})
	stuckConn, _ := dial(t, url) // never reads past its head
	stuck := <-opened
	okConn, okReader := dial(t, url)
	ok := <-opened
	_ = stuckConn

	// 64 KiB events until the stuck one is cut off; the reader gets each.
	big := strings.Repeat("x", 64<<10)
	for i := 0; ; i++ {
		if i == 1000 {
			t.Fatal("the stuck stream survived 64 MiB unread")
		}
		stuck.send("", big, false)
		ok.send("", big, false)
		if got := readBlock(t, okConn, okReader); len(got) != len("data: \n")+len(big) {
			t.Fatalf("the reading browser got %d bytes, want one event", len(got))
		}
		select {
		case <-stuck.closed:
		default:
			continue
		}
		break
	}
	if slow.Load() != 1 {
		t.Fatalf("slow disconnects = %d, want 1", slow.Load())
	}
	ok.send("1", "still here", false)
	if got := readBlock(t, okConn, okReader); got != "id: 1\ndata: still here\n" {
		t.Fatalf("after the cut-off the reader got %q", got)
	}
}

func TestCloseEndsEveryStreamAndRefusesNewOnes(t *testing.T) {
	pool, url, opened := server(t, stream.Config{Heartbeat: time.Hour})
	var conns []net.Conn
	var feeds []*feed
	for range 5 {
		c, _ := dial(t, url)
		conns = append(conns, c)
		feeds = append(feeds, <-opened)
	}
	pool.Close()
	for i, f := range feeds {
		f.waitClosed(t, "the pool closed")
		_ = conns[i].SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadAll(conns[i]); err != nil {
			t.Fatalf("stream %d: %v, want EOF", i, err)
		}
	}
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("a stream opened after Close: %d, want the handler's 503", resp.StatusCode)
	}
	if err := pool.Open(httptest.NewRecorder(), nil, newFeed()); !errors.Is(err, stream.ErrClosed) {
		t.Fatalf("Open after Close: %v, want ErrClosed", err)
	}
}
