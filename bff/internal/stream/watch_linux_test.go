package stream

import (
	"bufio"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// quiet is a Source with nothing to send.
type quiet struct{ closed chan struct{} }

func (quiet) Start(func()) {}

func (quiet) Fill(buf []byte) ([]byte, bool) { return buf, false }

func (q quiet) Closed() { close(q.closed) }

// ctlCall is one epoll_ctl the watcher made, with what the kernel said.
type ctlCall struct {
	op, fd int
	err    error
}

// A descriptor number is reused as soon as it is closed: an EPOLL_CTL_DEL
// on the watcher's epoll fd after it was closed fails with EBADF at best,
// and at worst removes a socket from whatever epoll set got the number.
func TestClosingThePoolRemovesEveryStreamFromEpollBeforeClosingIt(t *testing.T) {
	var (
		mu    sync.Mutex
		calls []ctlCall
	)
	epollCtl = func(epfd, op, fd int, ev *syscall.EpollEvent) error {
		err := syscall.EpollCtl(epfd, op, fd, ev)
		mu.Lock()
		calls = append(calls, ctlCall{op, fd, err})
		mu.Unlock()
		return err
	}
	t.Cleanup(func() { epollCtl = syscall.EpollCtl })

	pool, err := NewPool(Config{Heartbeat: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	opened := make(chan quiet, 3)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		q := quiet{closed: make(chan struct{})}
		if err := pool.Open(w, Head(w.Header(), time.Second), q); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		opened <- q
	}))
	t.Cleanup(srv.Close)
	var streams []quiet
	for range cap(opened) {
		conn, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		if _, err := conn.Write([]byte("GET / HTTP/1.1\r\nHost: test\r\n\r\n")); err != nil {
			t.Fatal(err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("stream answered %d, want 200", resp.StatusCode)
		}
		streams = append(streams, <-opened)
	}

	pool.Close()
	for _, q := range streams {
		<-q.closed // Close has returned: every stream is closed
	}
	mu.Lock()
	defer mu.Unlock()
	removed := 0
	for _, c := range calls {
		if c.err != nil {
			t.Errorf("epoll_ctl(op %d, fd %d): %v; want every call on the open epoll fd", c.op, c.fd, c.err)
		}
		if c.op == syscall.EPOLL_CTL_DEL && c.err == nil {
			removed++
		}
	}
	if removed != len(streams) {
		t.Errorf("%d streams removed from epoll, want all %d before it is closed", removed, len(streams))
	}
}
