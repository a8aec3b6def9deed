package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/exportstream/exportstream/bff/internal/backend"
	"github.com/exportstream/exportstream/bff/internal/httpapi"
	"github.com/exportstream/exportstream/bff/internal/relay"
)

// clock is a fake clock for the BFF's rate limits: time moves only when
// the test says.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// startBFFOnStub runs a BFF in front of a stub backend that accepts every
// create and lists no exports: the limits are the BFF's, and a thousand
// creates cost nothing.
func startBFFOnStub(t *testing.T, opts ...func(*relay.Config, *httpapi.Config)) string {
	t.Helper()
	var n atomic.Int64
	stub := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.Method == http.MethodPost && r.URL.Path == "/v1/exports":
			code := fmt.Sprintf("00000000-0000-4000-8000-%012d", n.Add(1))
			w.Header().Set("Location", "/api/exports/"+code)
			w.WriteHeader(http.StatusAccepted)
			_, _ = fmt.Fprintf(w, `{"code":%q,"status":"PENDING","progress":0,"seq":1}`, code)
		case r.Method == http.MethodGet && r.URL.Path == "/v1/exports":
			_, _ = fmt.Fprint(w, `{"exports":[]}`)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(stub.Close)
	be, err := backend.New(stub.URL, "")
	if err != nil {
		t.Fatal(err)
	}
	return startBFFOn(t, be, opts...)
}

// loopback: the test's requests come from here, so this is the trusted
// proxy when a test sends X-Forwarded-For as one would.
var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}

// refusal is what a browser is told past a limit.
type refusal struct {
	status     int
	code       string
	retryAfter string
}

// tally counts answers by status, and keeps the refusals' codes and
// Retry-After.
type tally struct {
	statuses map[int]int
	refusals map[refusal]int
	cookies  int // answers that started a session
}

func (tl *tally) add(resp *http.Response, body string) {
	if tl.statuses == nil {
		tl.statuses, tl.refusals = make(map[int]int), make(map[refusal]int)
	}
	tl.statuses[resp.StatusCode]++
	if len(resp.Cookies()) > 0 {
		tl.cookies++
	}
	if resp.StatusCode >= 400 {
		var e struct{ Error struct{ Code string } }
		_ = json.Unmarshal([]byte(body), &e)
		tl.refusals[refusal{resp.StatusCode, e.Error.Code, resp.Header.Get("Retry-After")}]++
	}
}

const oneRow = `{"rows":1,"durationMs":0}`

func TestAThousandCookielessCreatesFromOneAddressWithinASecondAreBoundedByItsLimit(t *testing.T) {
	clk := newClock()
	bff := startBFFOnStub(t, func(_ *relay.Config, h *httpapi.Config) {
		h.CreateRate, h.CreateBurst = 5, 20 // each create is a new session: never reached
		h.AddressCreateRate, h.AddressCreateBurst = 0.25, 100
		h.Now = clk.Now
	})
	cookieless := &http.Client{}
	var got tally
	for range 1000 { // over one second of the fake clock
		clk.advance(time.Millisecond)
		got.add(send(t, cookieless, "POST", bff+"/api/exports", oneRow, nil))
	}
	// The burst, and no more: 0.25 tokens a second adds none within it.
	// The last token was taken at 0.1 s and a quarter of one is back by
	// 1 s: the next is 3.1 s away, which Retry-After rounds up.
	want := tally{
		statuses: map[int]int{202: 100, 429: 900},
		refusals: map[refusal]int{{429, "TOO_MANY_REQUESTS", "4"}: 900},
	}
	if fmt.Sprint(got.statuses, got.refusals) != fmt.Sprint(want.statuses, want.refusals) {
		t.Errorf("1,000 cookie-less creates from one address: %v %v, want %v %v", got.statuses, got.refusals, want.statuses, want.refusals)
	}
	if got.cookies < 100 {
		t.Errorf("%d answers started a session, want every accepted create to (the client keeps no cookie)", got.cookies)
	}
	clk.advance(4 * time.Second) // as Retry-After said
	if resp, body := send(t, cookieless, "POST", bff+"/api/exports", oneRow, nil); resp.StatusCode != http.StatusAccepted {
		t.Errorf("a create after Retry-After: %d %s, want 202", resp.StatusCode, body)
	}
}

func TestCreatesBehindATrustedProxyAreCountedPerRealClient(t *testing.T) {
	clk := newClock()
	bff := startBFFOnStub(t, func(_ *relay.Config, h *httpapi.Config) {
		h.TrustedProxies = loopback
		h.AddressCreateRate, h.AddressCreateBurst = 0.25, 1
		h.Now = clk.Now
	})
	from := func(xff string) http.Header { return http.Header{"X-Forwarded-For": {xff}} }
	cookieless := &http.Client{}
	var got tally
	for i := range 1000 { // one create each from 1,000 clients, all through the proxy
		clk.advance(time.Millisecond)
		got.add(send(t, cookieless, "POST", bff+"/api/exports", oneRow, from(fmt.Sprintf("198.18.%d.%d", i/250, i%250+1))))
	}
	if got.statuses[http.StatusAccepted] != 1000 {
		t.Errorf("1,000 clients behind the proxy, one create each: %v %v, want 1,000 × 202", got.statuses, got.refusals)
	}
	for name, xff := range map[string]string{
		"a client's second create":                      "198.18.0.1",
		"a second create with a spoofed leftmost entry": "203.0.113.99, 198.18.0.1",
	} {
		resp, body := send(t, cookieless, "POST", bff+"/api/exports", oneRow, from(xff))
		if resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(body, `"TOO_MANY_REQUESTS"`) || resp.Header.Get("Retry-After") != "4" {
			t.Errorf("%s (X-Forwarded-For %q): %d %s, Retry-After %q; want 429 TOO_MANY_REQUESTS, 4", name, xff, resp.StatusCode, body, resp.Header.Get("Retry-After"))
		}
	}
}

func TestXForwardedForFromAnUntrustedPeerIsIgnored(t *testing.T) {
	bff := startBFFOnStub(t, func(_ *relay.Config, h *httpapi.Config) {
		h.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")} // not the test's loopback
		h.AddressCreateRate, h.AddressCreateBurst = 0.25, 1
		h.Now = newClock().Now
	})
	cookieless := &http.Client{}
	first, _ := send(t, cookieless, "POST", bff+"/api/exports", oneRow, http.Header{"X-Forwarded-For": {"198.18.0.1"}})
	second, body := send(t, cookieless, "POST", bff+"/api/exports", oneRow, http.Header{"X-Forwarded-For": {"198.18.0.2"}})
	if first.StatusCode != http.StatusAccepted || second.StatusCode != http.StatusTooManyRequests || !strings.Contains(body, `"TOO_MANY_REQUESTS"`) {
		t.Errorf("two creates from one untrusted peer naming two clients: %d, %d %s; want 202 then 429 TOO_MANY_REQUESTS", first.StatusCode, second.StatusCode, body)
	}
}

func TestNewSessionsFromOneAddressAreBoundedWhileACookieKeepsWorking(t *testing.T) {
	clk := newClock()
	bff := startBFFOnStub(t, func(_ *relay.Config, h *httpapi.Config) {
		h.AddressSessionRate, h.AddressSessionBurst = 0.5, 3
		h.Now = clk.Now
	})
	kept := browser()
	if resp, body := send(t, kept, "GET", bff+"/api/exports", "", nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("a page's first list: %d %s", resp.StatusCode, body)
	}
	cookieless := &http.Client{}
	var got tally
	got.add(send(t, cookieless, "GET", bff+"/api/exports", "", nil))
	got.add(send(t, cookieless, "GET", bff+"/api/exports", "", nil))
	got.add(send(t, cookieless, "GET", bff+"/api/exports", "", nil))
	got.add(send(t, cookieless, "POST", bff+"/api/exports", oneRow, nil))
	got.add(tryTab(t, cookieless, bff))
	want := tally{
		statuses: map[int]int{200: 2, 429: 3},
		refusals: map[refusal]int{{429, "TOO_MANY_SESSIONS", "2"}: 3}, // a token every 2 s
	}
	if fmt.Sprint(got.statuses, got.refusals) != fmt.Sprint(want.statuses, want.refusals) {
		t.Errorf("a session kept, then 5 requests without one: %v %v, want %v %v", got.statuses, got.refusals, want.statuses, want.refusals)
	}
	if resp, body := send(t, kept, "POST", bff+"/api/exports", oneRow, nil); resp.StatusCode != http.StatusAccepted {
		t.Errorf("a create with the kept cookie: %d %s, want 202: it starts no session", resp.StatusCode, body)
	}
	clk.advance(2 * time.Second)
	if resp, body := send(t, cookieless, "GET", bff+"/api/exports", "", nil); resp.StatusCode != http.StatusOK {
		t.Errorf("a new session after Retry-After: %d %s, want 200", resp.StatusCode, body)
	}
}

// holdTab opens /api/events as browser c and keeps it open until the test
// ends; it fails the test unless the BFF took the stream.
func holdTab(t *testing.T, c *http.Client, bff string, header http.Header) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, bff+"/api/events", nil)
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		cancel()
		t.Fatalf("open a tab's stream: %v %v", resp, err)
	}
	t.Cleanup(func() { cancel(); _ = resp.Body.Close() })
}

// tryTab opens /api/events as browser c and returns the answer; the body
// only of a refusal (a stream taken would never end).
func tryTab(t *testing.T, c *http.Client, bff string) (*http.Response, string) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, bff+"/api/events", nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode == http.StatusOK {
		return resp, "(a stream)"
	}
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestOpenStreamsFromOneAddressAreCappedWhateverTheirSessions(t *testing.T) {
	bff := startBFFOnStub(t, func(_ *relay.Config, h *httpapi.Config) {
		h.TrustedProxies = loopback
		h.MaxStreamsPerSession, h.MaxStreamsPerAddress = 20, 3
	})
	a, b := browser(), browser()
	holdTab(t, a, bff, nil)
	holdTab(t, a, bff, nil)
	holdTab(t, b, bff, nil)
	for name, c := range map[string]*http.Client{"a fourth tab of another session": b, "a fourth tab of a new session": browser()} {
		resp, body := tryTab(t, c, bff)
		if resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(body, `"TOO_MANY_STREAMS"`) || !strings.Contains(body, "this address") || resp.Header.Get("Retry-After") == "" {
			t.Errorf("%s from the address: %d %s, Retry-After %q; want 429 TOO_MANY_STREAMS for the address, with Retry-After", name, resp.StatusCode, body, resp.Header.Get("Retry-After"))
		}
	}
	holdTab(t, browser(), bff, http.Header{"X-Forwarded-For": {"198.18.0.1"}}) // another client behind the proxy
}
