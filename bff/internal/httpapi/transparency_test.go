package httpapi_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	sse "github.com/tmaxmax/go-sse"

	"github.com/exportstream/exportstream/bff/internal/backend"
	"github.com/exportstream/exportstream/bff/internal/httpapi"
	"github.com/exportstream/exportstream/bff/internal/relay"
	"github.com/exportstream/exportstream/bff/internal/session"
)

// scriptedBackend stands in for the backend's event streams: the first
// request for a code gets that code's scripted bytes, written in the given
// pieces; later requests (the relay reconnecting) wait until cancelled.
type scriptedBackend struct {
	mu     sync.Mutex
	bodies map[string][]string
	srv    *httptest.Server
}

func newScriptedBackend(t *testing.T) *scriptedBackend {
	t.Helper()
	b := &scriptedBackend{bodies: make(map[string][]string)}
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		code := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/v1/exports/"), "/events")
		b.mu.Lock()
		pieces, ok := b.bodies[code]
		delete(b.bodies, code)
		b.mu.Unlock()
		if !ok {
			<-r.Context().Done()
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		for _, p := range pieces {
			_, _ = io.WriteString(w, p)
			w.(http.Flusher).Flush()
		}
	}))
	t.Cleanup(b.srv.Close)
	return b
}

func (b *scriptedBackend) script(code string, pieces ...string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.bodies[code] = pieces
}

// browserCookie is a valid session cookie for the test BFFs.
func browserCookie(t *testing.T) *http.Cookie {
	t.Helper()
	m, err := session.New(testSecret, false, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	m.Issue(rec)
	return rec.Result().Cookies()[0]
}

// upstreamEvents is what a spec-following parser (go-sse's) makes of the
// backend's bytes, less the data-less blocks the relay does not forward.
func upstreamEvents(body string) []string {
	var out []string
	for ev, err := range sse.Read(strings.NewReader(body), &sse.ReadConfig{MaxEventSize: 1 << 20}) {
		if err != nil {
			break
		}
		if ev.Data != "" {
			out = append(out, ev.LastEventID+"|"+ev.Data)
		}
	}
	return out
}

func startScriptedBFF(t *testing.T, b *scriptedBackend, opts ...func(*relay.Config, *httpapi.Config)) string {
	t.Helper()
	be, err := backend.New(b.srv.URL, "")
	if err != nil {
		t.Fatal(err)
	}
	return startBFFOn(t, be, opts...)
}

func startBFFOn(t *testing.T, be *backend.Client, opts ...func(*relay.Config, *httpapi.Config)) string {
	t.Helper()
	url, _ := startBFFServer(t, be, nil, opts...)
	return url
}

// startBFFListening is startBFFOn with the BFF's listener wrapped.
func startBFFListening(t *testing.T, be *backend.Client, wrap func(net.Listener) net.Listener, opts ...func(*relay.Config, *httpapi.Config)) string {
	t.Helper()
	url, _ := startBFFServer(t, be, wrap, opts...)
	return url
}

// startBFFServer is startBFFOn with the BFF's listener wrapped (nil: as it
// is) that also returns the BFF's handler, for a test that shuts it down
// (CloseStreams) itself.
func startBFFServer(t *testing.T, be *backend.Client, wrap func(net.Listener) net.Listener, opts ...func(*relay.Config, *httpapi.Config)) (string, *httpapi.Server) {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	sessions, _ := session.New(testSecret, false, time.Hour)
	metrics := httpapi.NewMetrics()
	rcfg := relay.Config{GiveUp: 5 * time.Second, MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, Buffer: 64}
	hcfg := httpapi.Config{
		Backend: be, Sessions: sessions, Metrics: metrics, Logger: log, Heartbeat: 15 * time.Second, Retry: time.Second,
		WriteTimeout: 5 * time.Second, MaxStreamsPerSession: 20, MaxStreams: 1000,
	}
	for _, o := range opts {
		o(&rcfg, &hcfg)
	}
	hub := relay.NewHub(be, rcfg, metrics, log)
	hcfg.Hub = hub
	api, err := httpapi.New(hcfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(api)
	if wrap != nil {
		srv.Listener = wrap(srv.Listener)
	}
	srv.Start()
	t.Cleanup(func() {
		api.CloseStreams()
		srv.Close()
		hub.Close()
	})
	return srv.URL, api
}

// openRelayed opens code's event stream through the BFF as the browser
// with cookie, for at most timeout; the caller closes the body.
func openRelayed(t *testing.T, bff, code string, cookie *http.Cookie, timeout time.Duration) *http.Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, bff+"/api/exports/"+code+"/events", nil)
	req.AddCookie(cookie)
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// readRelayed reads n events of code through the BFF.
func readRelayed(t *testing.T, bff, code string, cookie *http.Cookie, n int) []string {
	t.Helper()
	resp := openRelayed(t, bff, code, cookie, 10*time.Second)
	defer func() { _ = resp.Body.Close() }()
	var got []string
	for ev, err := range sse.Read(resp.Body, &sse.ReadConfig{MaxEventSize: 1 << 20}) {
		if err != nil {
			t.Fatalf("read relayed stream after %d events: %v", len(got), err)
		}
		got = append(got, ev.LastEventID+"|"+ev.Data)
		if len(got) == n {
			break
		}
	}
	return got
}

func TestTheRelayIsTransparentOnTheWire(t *testing.T) {
	long := strings.Repeat("x", 200_000)
	tests := []struct {
		name   string
		pieces []string
		want   []string // what the browser must see, as "id|data"
	}{
		{"LF line endings", []string{"id: 1\ndata: a\n\n"}, []string{"1|a"}},
		{"CRLF line endings", []string{"id: 1\r\ndata: a\r\n\r\n"}, []string{"1|a"}},
		{"CR line endings", []string{"id: 1\rdata: a\r\r"}, []string{"1|a"}},
		{"mixed line endings", []string{"id: 1\r\ndata: a\rdata: b\n\n"}, []string{"1|a\nb"}},
		{"multi-line data", []string{"id: 2\ndata: line one\ndata: line two\ndata: three\n\n"}, []string{"2|line one\nline two\nthree"}},
		{"data without the space", []string{"id: 1\ndata:x\n\n"}, []string{"1|x"}},
		{"data with two leading spaces keeps one", []string{"id: 1\ndata:  x\n\n"}, []string{"1| x"}},
		{"data that is only spaces", []string{"id: 1\ndata:    \n\n"}, []string{"1|   "}},
		{"a colon inside data", []string{"id: 1\ndata: a:b: c\n\n"}, []string{"1|a:b: c"}},
		{"comments are the relay's own", []string{": hello\nid: 1\n: more\ndata: a\n\n"}, []string{"1|a"}},
		{"an unknown field is ignored", []string{"id: 1\nfoo: bar\ndata: a\n\n"}, []string{"1|a"}},
		{"a field without a colon", []string{"id: 1\ndata\ndata: x\n\n"}, []string{"1|\nx"}},
		{"retry with junk is ignored", []string{"retry: soon\nid: 1\ndata: a\n\n"}, []string{"1|a"}},
		{"an id containing NUL is ignored", []string{"id: 1\ndata: a\n\nid: 2\x003\ndata: b\n\n"}, []string{"1|a", "1|b"}},
		{"an id carries over to the next event", []string{"id: 5\ndata: a\n\ndata: b\n\n"}, []string{"5|a", "5|b"}},
		{"a byte order mark first", []string{"\ufeffid: 1\ndata: a\n\n"}, []string{"1|a"}},
		{"leading blank lines", []string{"\n\n\nid: 1\ndata: a\n\n"}, []string{"1|a"}},
		{"unicode", []string{"id: 1\ndata: 日本語 ✓ émoji 🚀\n\n"}, []string{"1|日本語 ✓ émoji 🚀"}},
		{"JSON with escapes", []string{"id: 1\ndata: {\"s\":\"\\u00e9\\n\\\"q\\\"\"}\n\n"}, []string{`1|{"s":"\u00e9\n\"q\""}`}},
		{"a very long line", []string{"id: 1\ndata: " + long + "\n\n"}, []string{"1|" + long}},
		{"a hundred data lines", []string{"id: 1\n" + strings.Repeat("data: l\n", 100) + "\n"}, []string{"1|" + strings.TrimSuffix(strings.Repeat("l\n", 100), "\n")}},
		{"several events in one write", []string{"id: 1\ndata: a\n\nid: 2\ndata: b\n\nid: 3\ndata: c\n\n"}, []string{"1|a", "2|b", "3|c"}},
		{"an event split across writes", []string{"id: 1\nda", "ta: a", "b\n", "\n"}, []string{"1|ab"}},
		{"a CRLF split between writes", []string{"id: 1\r", "\ndata: a\r", "\n\r", "\n"}, []string{"1|a"}},
		{"an event type is dropped, the data kept", []string{"id: 1\nevent: progress\ndata: a\n\n"}, []string{"1|a"}},
		{"ids that are not numbers pass unchanged", []string{"id: abc\ndata: a\n\n"}, []string{"abc|a"}},
		{"a data-less block is not an event", []string{"id: 1\n\nid: 2\ndata: a\n\n"}, []string{"2|a"}},
	}
	b := newScriptedBackend(t)
	bff := startScriptedBFF(t, b)
	cookie := browserCookie(t)
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The oracle is a spec-following parser reading the same bytes.
			if oracle := upstreamEvents(strings.Join(tt.pieces, "")); fmt.Sprint(oracle) != fmt.Sprint(tt.want) {
				t.Fatalf("the case is wrong: a parser reads %q, the case expects %q", oracle, tt.want)
			}
			code := fmt.Sprintf("00000000-0000-4000-8000-%012d", i)
			b.script(code, tt.pieces...)
			if got := readRelayed(t, bff, code, cookie, len(tt.want)); fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("through the BFF: %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestABrowserThatStopsReadingIsCutOffWithoutSlowingTheOthers(t *testing.T) {
	b := newScriptedBackend(t)
	logs := &signalingHandler{msgs: make(chan string, 16)}
	bff := startScriptedBFF(t, b, func(_ *relay.Config, h *httpapi.Config) {
		h.WriteTimeout = 300 * time.Millisecond
		h.Logger = slog.New(logs)
	})
	cookie := browserCookie(t)
	code := "00000000-0000-4000-8000-00000000abcd"
	// Big events fill the stuck browser's socket buffers; the last one ends the job.
	big := strings.Repeat("z", 600_000)
	var pieces []string
	for seq := 1; seq <= 12; seq++ {
		pieces = append(pieces, fmt.Sprintf("id: %d\ndata: {\"status\":\"IN_PROGRESS\",\"pad\":%q}\n\n", seq, big))
	}
	pieces = append(pieces, "id: 13\ndata: {\"status\":\"COMPLETED\"}\n\n")
	b.script(code, strings.Join(pieces, ""))

	// The stuck browser sends its request and never reads; a small receive
	// buffer makes the BFF's writes block after a few megabytes.
	u := strings.TrimPrefix(bff, "http://")
	dialer := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		return c.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	stuck, err := dialer.DialContext(t.Context(), "tcp", u)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = stuck.Close() }()
	_, _ = fmt.Fprintf(stuck, "GET /api/exports/%s/events HTTP/1.1\r\nHost: %s\r\nCookie: %s\r\n\r\n", code, u, cookie.String())

	resp := openRelayed(t, bff, code, cookie, 20*time.Second)
	defer func() { _ = resp.Body.Close() }()
	var last string
	for ev, err := range sse.Read(resp.Body, &sse.ReadConfig{MaxEventSize: 1 << 20}) {
		if err != nil {
			t.Fatalf("the reading browser's stream broke: %v", err)
		}
		last = ev.LastEventID
	}
	if last != "13" {
		t.Fatalf("the reading browser ended at id %q, want the final 13", last)
	}
	// The BFF says when it cuts a browser off; then read what the stuck one
	// was sent: it must end (EOF or reset) before the final event.
	for cut := false; !cut; {
		select {
		case msg := <-logs.msgs:
			cut = strings.Contains(msg, "stopped reading")
		case <-time.After(10 * time.Second):
			t.Fatal("the BFF never cut off the browser that stopped reading")
		}
	}
	_ = stuck.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(bufio.NewReader(stuck))
	if strings.Contains(string(got), "id: 13\n") {
		t.Errorf("the stuck browser was sent the whole stream (%d bytes, %v); want it cut off", len(got), err)
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("the stuck browser's connection is still open after the write timeout")
	}
}

// signalingHandler is a slog handler that hands each message to the test.
type signalingHandler struct{ msgs chan string }

func (h *signalingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *signalingHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *signalingHandler) WithGroup(string) slog.Handler            { return h }
func (h *signalingHandler) Handle(_ context.Context, r slog.Record) error {
	select {
	case h.msgs <- r.Message:
	default:
	}
	return nil
}
