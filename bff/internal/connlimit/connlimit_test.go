package connlimit_test

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/exportstream/exportstream/bff/internal/connlimit"
	"github.com/exportstream/exportstream/internal/testenv"
)

// serve runs an HTTP server on a limited loopback listener; /hold answers
// its head and then holds the connection until release is closed.
func serve(t *testing.T, maxOpen int, release <-chan struct{}) (*connlimit.Listener, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := connlimit.NewListener(ln, maxOpen)
	srv := &http.Server{ConnContext: connlimit.ConnContext, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if connlimit.OverBudget(r.Context()) {
			w.Header().Set("Connection", "close")
			w.Header().Set("Retry-After", "5")
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, `{"error":{"code":"TOO_MANY_CONNECTIONS","message":"full"}}`)
			return
		}
		if r.URL.Path == "/hold" {
			w.WriteHeader(http.StatusOK)
			w.(http.Flusher).Flush()
			select {
			case <-release:
			case <-r.Context().Done():
			}
			return
		}
		_, _ = io.WriteString(w, "ok")
	}), ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close(); <-done })
	return l, "http://" + ln.Addr().String()
}

// hold opens a connection that stays open on /hold.
func hold(t *testing.T, base string) io.Closer {
	t.Helper()
	resp, err := http.Get(base + "/hold")
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("hold: %d", resp.StatusCode)
	}
	return resp.Body
}

func waitOpen(t *testing.T, l *connlimit.Listener, want int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for l.Open() != want {
		if time.Now().After(deadline) {
			t.Fatalf("open connections: %d, want %d", l.Open(), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// fresh is a client that opens a new connection for every request.
func fresh() *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
}

func TestAConnectionPastTheLimitIsAnswered503AtOnceAndASlotFreedIsReused(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	l, base := serve(t, 3, release)
	held := []io.Closer{hold(t, base), hold(t, base), hold(t, base)}
	waitOpen(t, l, 3)

	for range 5 {
		start := time.Now()
		resp, err := fresh().Get(base + "/")
		if err != nil {
			t.Fatalf("a connection past the limit: %v (want a 503, not an error or a hang)", err)
		}
		var body struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		err = json.NewDecoder(resp.Body).Decode(&body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || err != nil || body.Error.Code != "TOO_MANY_CONNECTIONS" {
			t.Fatalf("past the limit: %d %+v (%v), want 503 TOO_MANY_CONNECTIONS", resp.StatusCode, body, err)
		}
		if resp.Header.Get("Retry-After") == "" || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
			t.Errorf("refusal headers: %v", resp.Header)
		}
		if took := time.Since(start); took > 2*time.Second {
			t.Errorf("the refusal took %v", took)
		}
	}
	if l.Open() != 3 {
		t.Errorf("refused connections counted: open %d, want 3", l.Open())
	}

	_ = held[0].Close()
	waitOpen(t, l, 2)
	resp, err := fresh().Get(base + "/")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("after a slot was freed: %v %v, want 200", resp, err)
	}
	_ = resp.Body.Close()
	for _, h := range held[1:] {
		_ = h.Close()
	}
	waitOpen(t, l, 0)
}

func TestARefusedClientThatSendsNothingIsCutOffAndDoesNotBlockAccept(t *testing.T) {
	testenv.Slow(t)
	release := make(chan struct{})
	defer close(release)
	l, base := serve(t, 1, release)
	h := hold(t, base)
	defer func() { _ = h.Close() }()
	waitOpen(t, l, 1)
	addr := strings.TrimPrefix(base, "http://")

	// Silent clients past the limit, one fewer than the refusing slots:
	// while their refusals wait for a request head, others are still
	// answered at once; each silent one gets its answer when the refusal
	// timeout passes.
	dial := func(n int) []net.Conn {
		var cs []net.Conn
		for range n {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			cs = append(cs, c)
		}
		return cs
	}
	silent := dial(connlimit.Refusing - 1)
	start := time.Now()
	resp, err := fresh().Get(base + "/")
	if err != nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("with silent clients waiting: %v %v, want 503", resp, err)
	}
	_ = resp.Body.Close()
	if took := time.Since(start); took > 500*time.Millisecond {
		t.Errorf("the refusal waited %v for the silent clients", took)
	}
	// More silent clients than slots: a client is still let go at once,
	// answered or closed, never left waiting.
	silent = append(silent, dial(5)...)
	start = time.Now()
	if resp, err := fresh().Get(base + "/"); err == nil {
		_ = resp.Body.Close()
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("with every refusing slot taken a client waited %v", took)
	}
	for _, c := range silent {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		if err == nil && !strings.HasPrefix(line, "HTTP/1.1 503") {
			t.Errorf("a silent client past the limit got %q", line)
		}
		_ = c.Close()
	}
}
