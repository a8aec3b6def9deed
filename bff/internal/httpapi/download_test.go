package httpapi_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/exportstream/exportstream/bff/internal/backend"
	"github.com/exportstream/exportstream/bff/internal/httpapi"
	"github.com/exportstream/exportstream/bff/internal/relay"
	"github.com/exportstream/exportstream/internal/testenv"
)

// fileBackend serves one large file at every path, and reports when a
// connection to it closes and what ended the file handler.
type fileBackend struct {
	url    string
	file   []byte
	closed chan struct{} // a connection closed
	ended  chan error    // the file handler returned, with its write error
}

func newFileBackend(t *testing.T, size int) *fileBackend {
	t.Helper()
	b := &fileBackend{file: bytes.Repeat([]byte("0123456789abcdef"), size/16), closed: make(chan struct{}, 16), ended: make(chan error, 16)}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, "/file") {
			http.NotFound(w, r) // the relay's event stream: none here
			return
		}
		w.Header().Set("Content-Type", "text/csv")
		w.Header().Set("Content-Length", strconv.Itoa(len(b.file)))
		_, err := w.Write(b.file)
		b.ended <- err
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateClosed {
			b.closed <- struct{}{}
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	b.url = srv.URL
	return b
}

// smallSendBuffers gives the BFF's connections to browsers a fixed 64 KiB
// send buffer. Left to grow to MiBs on loopback, it would hold much of a
// test file, and a blocked write would go on only after a third of it was
// read (the kernel's wake-up threshold): the timing would be the kernel's.
type smallSendBuffers struct{ net.Listener }

func (l smallSendBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(64 << 10)
	}
	return c, err
}

func startDownloadBFF(t *testing.T, b *fileBackend, timeout time.Duration) string {
	t.Helper()
	be, err := backend.New(b.url, "")
	if err != nil {
		t.Fatal(err)
	}
	return startBFFListening(t, be, func(l net.Listener) net.Listener { return smallSendBuffers{l} },
		func(_ *relay.Config, h *httpapi.Config) { h.ResponseWriteTimeout = timeout })
}

// requestFile asks the BFF for a download over a connection with a fixed
// receive buffer, and returns the connection, to read or not.
func requestFile(t *testing.T, bff string, rcvbuf int) net.Conn {
	t.Helper()
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		return c.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcvbuf) })
	}}
	conn, err := d.DialContext(t.Context(), "tcp", strings.TrimPrefix(bff, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	_, err = fmt.Fprintf(conn, "GET /api/exports/00000000-0000-4000-8000-00000000f11e/file HTTP/1.1\r\nHost: bff\r\nCookie: %s\r\n\r\n", browserCookie(t).String())
	if err != nil {
		t.Fatal(err)
	}
	return conn
}

func TestADownloadTheBrowserStoppedReadingIsCutOffAndItsBackendRequestEnded(t *testing.T) {
	const timeout = 300 * time.Millisecond
	b := newFileBackend(t, 64<<20) // far more than every socket buffer on the way holds
	bff := startDownloadBFF(t, b, timeout)
	start := time.Now()
	conn := requestFile(t, bff, 4096) // and never read

	// Without a bound the BFF's write blocks for good, and the backend's
	// behind it: its connection would never close.
	limit := timeout + 5*time.Second
	select {
	case <-b.closed:
	case <-time.After(limit):
		t.Fatalf("the backend connection of a download nobody reads is still open after %v (write timeout %v)", limit, timeout)
	}
	t.Logf("backend connection closed %v after the request", time.Since(start))
	select {
	case err := <-b.ended:
		if err == nil {
			t.Error("the backend wrote the whole file to a BFF whose browser never read it")
		}
	case <-time.After(5 * time.Second):
		t.Error("the backend's file handler did not return once its connection closed")
	}
	// The browser's side: what was buffered, then the end, not a hang.
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := io.Copy(io.Discard, conn)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("the BFF left the stuck browser's connection open (%d bytes read, then nothing)", n)
	}
	if n >= int64(len(b.file)) {
		t.Errorf("the stuck browser got %d bytes, the whole file", n)
	}
}

func TestASlowButReadingBrowserGetsItsWholeDownloadPastTheWriteTimeout(t *testing.T) {
	testenv.Slow(t)
	const timeout = time.Second
	b := newFileBackend(t, 8<<20)
	bff := startDownloadBFF(t, b, timeout)
	start := time.Now()
	conn := requestFile(t, bff, 256<<10)
	resp, err := http.ReadResponse(bufio.NewReaderSize(conn, 64<<10), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	// 256 KiB, then a pause of a tenth of the write timeout: seconds for
	// 8 MiB, several write timeouts, so only a deadline that moves with
	// the bytes lets it through. A pause is the reader's pace, not a wait
	// for something to happen.
	tick := time.NewTicker(timeout / 10)
	defer tick.Stop()
	var got bytes.Buffer
	for {
		<-tick.C
		n, err := got.ReadFrom(io.LimitReader(resp.Body, 256<<10))
		if err != nil {
			t.Fatalf("after %d bytes in %v: %v", got.Len(), time.Since(start), err)
		}
		if n == 0 {
			break
		}
	}
	took := time.Since(start)
	if !bytes.Equal(got.Bytes(), b.file) {
		t.Fatalf("a slow reader got %d of %d bytes in %v (write timeout %v), want the whole file", got.Len(), len(b.file), took, timeout)
	}
	if took < 3*timeout {
		t.Fatalf("the download took %v, want several write timeouts (%v) for the test to mean anything", took, timeout)
	}
	t.Logf("8 MiB read slowly in %v, write timeout %v", took, timeout)
}
