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
	"github.com/exportstream/exportstream/bff/internal/relay/relaytest"
	"github.com/exportstream/exportstream/bff/internal/session"
)

// scriptedBackend stands in for the backend's multiplexed stream: when the
// relay subscribes a scripted code, that code's envelopes are sent on the
// stream, then the end of its stream (end "done", alone).
type scriptedBackend struct {
	*relaytest.Backend
	conn *relaytest.Conn

	mu      sync.Mutex
	scripts map[string][]relaytest.Envelope
}

// startScriptedBFF starts the fake backend and a BFF in front of it.
func startScriptedBFF(t *testing.T, opts ...func(*relay.Config, *httpapi.Config)) (*scriptedBackend, string) {
	t.Helper()
	b := &scriptedBackend{Backend: relaytest.New(t), scripts: make(map[string][]relaytest.Envelope)}
	be, err := backend.New(b.URL, "")
	if err != nil {
		t.Fatal(err)
	}
	bff := startBFFOn(t, be, opts...)
	b.conn = b.NextStream(t)
	b.Answer(func(c relaytest.Call) int {
		b.mu.Lock()
		envs, ok := b.scripts[c.Code]
		b.mu.Unlock()
		if ok && c.Method == http.MethodPut {
			out := make([]relaytest.Envelope, 0, len(envs)+1)
			for _, e := range envs {
				e.Owner, e.Code = c.Owner, c.Code
				out = append(out, e)
			}
			b.conn.Envelope(append(out, relaytest.Ended(c.Owner, c.Code, "done"))...)
		}
		return http.StatusNoContent
	})
	return b, bff
}

// script sets what the backend sends for code (owner and code filled in).
func (b *scriptedBackend) script(code string, envs ...relaytest.Envelope) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.scripts[code] = envs
}

// browserCookie is a valid session cookie for the test BFFs.
func browserCookie(t *testing.T) *http.Cookie {
	t.Helper()
	m, err := session.New([][]byte{testSecret}, false, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	m.Issue(rec)
	return rec.Result().Cookies()[0]
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
	sessions, _ := session.New([][]byte{testSecret}, false, time.Hour)
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

// readRelayed reads code's whole stream through the BFF: the relay ends
// it after the backend's end of the code.
func readRelayed(t *testing.T, bff, code string, cookie *http.Cookie) string {
	t.Helper()
	resp := openRelayed(t, bff, code, cookie, 10*time.Second)
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("the BFF answered %d", resp.StatusCode)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read the relayed stream: %v", err)
	}
	return string(body)
}

// goSSEEvents is what go-sse's reader makes of an event stream, as
// "type|lastEventID|data". It yields blocks without data too (as
// data ""), so it cannot tell "data:" from no data field: browserEvents can.
func goSSEEvents(body string) []string {
	var out []string
	for ev, err := range sse.Read(strings.NewReader(body), &sse.ReadConfig{MaxEventSize: 1 << 20}) {
		if err != nil {
			return append(out, "error: "+err.Error())
		}
		out = append(out, ev.Type+"|"+ev.LastEventID+"|"+ev.Data)
	}
	return out
}

// browserEvents is what a browser's EventSource dispatches reading an
// event stream, by the WHATWG algorithm ("interpret an event stream"), as
// "type|lastEventId|data": a block with no data field is not dispatched,
// though its id still sets lastEventId; "data:" with nothing after it is
// dispatched with data "".
func browserEvents(body string) []string {
	var out []string
	var data strings.Builder
	typ, lastID, idBuf := "", "", ""
	body = strings.TrimPrefix(body, "\ufeff")
	for {
		i := strings.IndexAny(body, "\r\n")
		if i < 0 {
			return out // the stream ended: an incomplete event is not dispatched
		}
		line := body[:i]
		if body[i] == '\r' && i+1 < len(body) && body[i+1] == '\n' {
			i++
		}
		body = body[i+1:]
		if line == "" {
			lastID = idBuf
			if data.Len() > 0 {
				t := typ
				if t == "" {
					t = "message"
				}
				out = append(out, t+"|"+lastID+"|"+strings.TrimSuffix(data.String(), "\n"))
			}
			data.Reset()
			typ = ""
			continue
		}
		name, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch name {
		case "event":
			typ = value
		case "data":
			data.WriteString(value)
			data.WriteByte('\n')
		case "id":
			if !strings.Contains(value, "\x00") {
				idBuf = value
			}
		}
	}
}

// env is an envelope's job event; nil: no such field.
func env(typ string, id, data *string) relaytest.Envelope {
	return relaytest.Envelope{Event: typ, ID: id, Data: data}
}

// TestTheRelayIsTransparentOnTheWire: a browser reading a job's stream
// through the BFF dispatches exactly what it would reading the backend's
// own stream of the job (GET /v1/exports/{code}/events), given the same
// events on the backend's multiplexed stream. Each case is the backend's
// per-job bytes and the same events as envelopes; both go-sse's reader and
// the WHATWG algorithm read the two streams alike.
func TestTheRelayIsTransparentOnTheWire(t *testing.T) {
	long := strings.Repeat("x", 200_000)
	hundred := strings.TrimSuffix(strings.Repeat("l\n", 100), "\n")
	tests := []struct {
		name   string
		direct string               // the backend's per-job stream
		mux    []relaytest.Envelope // the same events on its multiplexed stream
		want   []string             // what a browser dispatches, as "type|lastEventId|data"
	}{
		{"a snapshot", "id: 1\ndata: {\"status\":\"PENDING\"}\n\n", []relaytest.Envelope{env("", new("1"), new(`{"status":"PENDING"}`))}, []string{`message|1|{"status":"PENDING"}`}},
		{"an event type", "event: progress\nid: 2\ndata: a\n\n", []relaytest.Envelope{env("progress", new("2"), new("a"))}, []string{"progress|2|a"}},
		{"data with an empty value", "id: 3\ndata:\n\n", []relaytest.Envelope{env("", new("3"), new(""))}, []string{"message|3|"}},
		{"data with only the space", "id: 3\ndata: \n\n", []relaytest.Envelope{env("", new("3"), new(""))}, []string{"message|3|"}},
		{"a data line without colon", "id: 4\ndata\n\n", []relaytest.Envelope{env("", new("4"), new(""))}, []string{"message|4|"}},
		{"an id reset", "id: 5\ndata: a\n\nid:\ndata: b\n\n", []relaytest.Envelope{env("", new("5"), new("a")), env("", new(""), new("b"))}, []string{"message|5|a", "message||b"}},
		{"an id reset with the space", "id: 5\ndata: a\n\nid: \ndata: b\n\n", []relaytest.Envelope{env("", new("5"), new("a")), env("", new(""), new("b"))}, []string{"message|5|a", "message||b"}},
		{"an event with no data is not dispatched, its id counts", "id: 6\n\ndata: a\n\n", []relaytest.Envelope{env("", new("6"), nil), env("", nil, new("a"))}, []string{"message|6|a"}},
		{"a type with no data is not dispatched and does not stick", "event: x\n\ndata: a\n\n", []relaytest.Envelope{env("x", nil, nil), env("", nil, new("a"))}, []string{"message||a"}},
		{"a type and an id with no data", "event: x\nid: 9\n\ndata: z\n\n", []relaytest.Envelope{env("x", new("9"), nil), env("", nil, new("z"))}, []string{"message|9|z"}},
		{"a type, an id reset and empty data together", "id: 1\ndata: a\n\nevent: reset\nid:\ndata:\n\n", []relaytest.Envelope{env("", new("1"), new("a")), env("reset", new(""), new(""))}, []string{"message|1|a", "reset||"}},
		{"an id carries over to the next event", "id: 7\ndata: a\n\ndata: b\n\n", []relaytest.Envelope{env("", new("7"), new("a")), env("", nil, new("b"))}, []string{"message|7|a", "message|7|b"}},
		{"multi-line data", "id: 8\ndata: line one\ndata: line two\ndata: three\n\n", []relaytest.Envelope{env("", new("8"), new("line one\nline two\nthree"))}, []string{"message|8|line one\nline two\nthree"}},
		{"multi-line data with empty lines", "id: 8\ndata:\ndata: a\ndata:\ndata:\n\n", []relaytest.Envelope{env("", new("8"), new("\na\n\n"))}, []string{"message|8|\na\n\n"}},
		{"data with two leading spaces keeps one", "id: 1\ndata:  x\n\n", []relaytest.Envelope{env("", new("1"), new(" x"))}, []string{"message|1| x"}},
		{"data that is only spaces", "id: 1\ndata:    \n\n", []relaytest.Envelope{env("", new("1"), new("   "))}, []string{"message|1|   "}},
		{"a colon inside data", "id: 1\ndata: a:b: c\n\n", []relaytest.Envelope{env("", new("1"), new("a:b: c"))}, []string{"message|1|a:b: c"}},
		{"an id containing NUL is ignored", "id: 1\ndata: a\n\nid: 2\x003\ndata: b\n\n", []relaytest.Envelope{env("", new("1"), new("a")), env("", new("2\x003"), new("b"))}, []string{"message|1|a", "message|1|b"}},
		{"ids that are not numbers pass unchanged", "id: abc\ndata: a\n\n", []relaytest.Envelope{env("", new("abc"), new("a"))}, []string{"message|abc|a"}},
		{"unicode", "id: 1\ndata: 日本語 ✓ émoji 🚀\n\n", []relaytest.Envelope{env("", new("1"), new("日本語 ✓ émoji 🚀"))}, []string{"message|1|日本語 ✓ émoji 🚀"}},
		{"JSON with escapes", "id: 1\ndata: {\"s\":\"\\u00e9\\n\\\"q\\\"\"}\n\n", []relaytest.Envelope{env("", new("1"), new(`{"s":"\u00e9\n\"q\""}`))}, []string{`message|1|{"s":"\u00e9\n\"q\""}`}},
		{"a very long line", "id: 1\ndata: " + long + "\n\n", []relaytest.Envelope{env("", new("1"), new(long))}, []string{"message|1|" + long}},
		{"a hundred data lines", "id: 1\n" + strings.Repeat("data: l\n", 100) + "\n", []relaytest.Envelope{env("", new("1"), new(hundred))}, []string{"message|1|" + hundred}},
		{"several events", "id: 1\ndata: a\n\nid: 2\ndata: b\n\nid: 3\ndata: c\n\n", []relaytest.Envelope{env("", new("1"), new("a")), env("", new("2"), new("b")), env("", new("3"), new("c"))}, []string{"message|1|a", "message|2|b", "message|3|c"}},
		// The backend's own framing, which a browser reads alike.
		{"CRLF line endings", "id: 1\r\ndata: a\r\n\r\n", []relaytest.Envelope{env("", new("1"), new("a"))}, []string{"message|1|a"}},
		{"CR line endings", "id: 1\rdata: a\r\r", []relaytest.Envelope{env("", new("1"), new("a"))}, []string{"message|1|a"}},
		{"mixed line endings", "id: 1\r\ndata: a\rdata: b\n\n", []relaytest.Envelope{env("", new("1"), new("a\nb"))}, []string{"message|1|a\nb"}},
		{"a byte order mark and comments", "\ufeff: hello\nid: 1\n: more\ndata: a\n\n", []relaytest.Envelope{env("", new("1"), new("a"))}, []string{"message|1|a"}},
		{"unknown fields and retry with junk", "retry: soon\nfoo: bar\nid: 1\ndata: a\n\n", []relaytest.Envelope{env("", new("1"), new("a"))}, []string{"message|1|a"}},
	}
	b, bff := startScriptedBFF(t)
	cookie := browserCookie(t)
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := browserEvents(tt.direct); fmt.Sprintf("%q", got) != fmt.Sprintf("%q", tt.want) {
				t.Fatalf("the case is wrong: a browser reads %q from the backend, the case expects %q", got, tt.want)
			}
			code := fmt.Sprintf("00000000-0000-4000-8000-%012d", i)
			b.script(code, tt.mux...)
			relayed := readRelayed(t, bff, code, cookie)
			if got, want := browserEvents(relayed), browserEvents(tt.direct); fmt.Sprintf("%q", got) != fmt.Sprintf("%q", want) {
				t.Errorf("a browser dispatches through the BFF %q\nreading the backend: %q\nthe BFF sent %q", got, want, relayed)
			}
			if got, want := goSSEEvents(relayed), goSSEEvents(tt.direct); fmt.Sprintf("%q", got) != fmt.Sprintf("%q", want) {
				t.Errorf("go-sse reads through the BFF %q\nreading the backend: %q\nthe BFF sent %q", got, want, relayed)
			}
		})
	}
}

func TestABrowserThatStopsReadingIsCutOffWithoutSlowingTheOthers(t *testing.T) {
	logs := &signalingHandler{msgs: make(chan string, 16)}
	b, bff := startScriptedBFF(t, func(_ *relay.Config, h *httpapi.Config) {
		h.WriteTimeout = 300 * time.Millisecond
		h.Logger = slog.New(logs)
	})
	cookie := browserCookie(t)
	code := "00000000-0000-4000-8000-00000000abcd"
	// Big events fill the stuck browser's socket buffers; the last one ends the job.
	big := strings.Repeat("z", 600_000)
	var envs []relaytest.Envelope
	for seq := 1; seq <= 12; seq++ {
		envs = append(envs, env("", new(fmt.Sprint(seq)), new(fmt.Sprintf(`{"status":"IN_PROGRESS","pad":%q}`, big))))
	}
	b.script(code, append(envs, env("", new("13"), new(`{"status":"COMPLETED"}`)))...)

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
