package httpapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	sse "github.com/tmaxmax/go-sse"

	"github.com/exportstream/exportstream/bff/internal/httpapi"
	"github.com/exportstream/exportstream/bff/internal/relay"
	"github.com/exportstream/exportstream/bff/internal/session"
	"github.com/exportstream/exportstream/internal/testenv"
)

// browser is one browser: its own cookie jar, so its own session.
func browser() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar}
}

func send(t *testing.T, c *http.Client, method, url, body string, header http.Header) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), method, url, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// createExport creates an export of req (its JSON) as browser c on the
// BFF at bff and returns the create's response and the job; it fails the
// test unless the BFF accepted it.
func createExport(t *testing.T, c *http.Client, bff, req string) (*http.Response, job) {
	t.Helper()
	resp, body := send(t, c, "POST", bff+"/api/exports", req, nil)
	var j job
	if err := json.Unmarshal([]byte(body), &j); err != nil || resp.StatusCode != http.StatusAccepted || j.Code == "" {
		t.Fatalf("create: %d %s", resp.StatusCode, body)
	}
	return resp, j
}

func TestAnotherSessionsExportIsNotFoundOnEveryEndpoint(t *testing.T) {
	be := startBackend(t)
	bff := startBFF(t, be.url, 5*time.Second)
	alice, mallory := browser(), browser()
	resp, j := createExport(t, alice, bff, `{"rows":10,"durationMs":0}`)
	if len(resp.Cookies()) != 1 || !resp.Cookies()[0].HttpOnly || resp.Cookies()[0].SameSite != http.SameSiteLaxMode {
		t.Errorf("session cookie %v: want one HttpOnly, SameSite=Lax cookie", resp.Cookies())
	}
	// alice's export completes; mallory (a session of her own) tries it all.
	send(t, mallory, "POST", bff+"/api/exports", `{"rows":1,"durationMs":0}`, nil)
	for _, path := range []string{"", "/events", "/file"} {
		if r, b := send(t, mallory, "GET", bff+"/api/exports/"+j.Code+path, "", nil); r.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s from another session: %d %s, want 404", path, r.StatusCode, b)
		}
		if r, _ := send(t, &http.Client{}, "GET", bff+"/api/exports/"+j.Code+path, "", nil); r.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s with no session: %d, want 404", path, r.StatusCode)
		}
	}
	if r, _ := send(t, mallory, "DELETE", bff+"/api/exports/"+j.Code, "", nil); r.StatusCode != http.StatusNotFound {
		t.Errorf("DELETE from another session: %d, want 404", r.StatusCode)
	}
	_, list := send(t, mallory, "GET", bff+"/api/exports", "", nil)
	if strings.Contains(list, j.Code) {
		t.Errorf("another session's list shows alice's export: %s", list)
	}
	if r, _ := send(t, alice, "GET", bff+"/api/exports/"+j.Code, "", nil); r.StatusCode != http.StatusOK {
		t.Errorf("alice's own export: %d", r.StatusCode)
	}
}

// A browser that puts another session's id into its own validly signed
// cookie (keeping its signature) is a stranger to that session: the
// signature must cover the id, or anyone who learns an id owns its exports.
func TestACookieWithAnotherSessionsIDUnderItsOwnSignatureSeesNothingOfThatSession(t *testing.T) {
	be := startBackend(t)
	bff := startBFF(t, be.url, 5*time.Second)
	alice, mallory := browser(), browser()
	_, j := createExport(t, alice, bff, `{"rows":10,"durationMs":0}`)
	send(t, mallory, "GET", bff+"/api/exports", "", nil) // mallory's own session
	cookie := func(c *http.Client) string { return sessionCookie(t, c, bff) }
	aliceID, _, _ := strings.Cut(cookie(alice), ".")
	_, mallorySig, _ := strings.Cut(cookie(mallory), ".")
	asCookie := func(value string) http.Header {
		return http.Header{"Cookie": {session.CookieName + "=" + value}}
	}
	plain := &http.Client{} // no jar: the Cookie header is the whole session
	if r, b := send(t, plain, "GET", bff+"/api/exports/"+j.Code, "", asCookie(cookie(alice))); r.StatusCode != http.StatusOK {
		t.Fatalf("alice's own cookie, sent by hand: %d %s", r.StatusCode, b)
	}
	forged := asCookie(aliceID + "." + mallorySig)
	for _, path := range []string{"", "/events", "/file"} {
		if r, b := send(t, plain, "GET", bff+"/api/exports/"+j.Code+path, "", forged); r.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s with alice's id under mallory's signature: %d %s, want 404", path, r.StatusCode, b)
		}
	}
	r, list := send(t, plain, "GET", bff+"/api/exports", "", forged)
	if strings.Contains(list, j.Code) {
		t.Errorf("the list with alice's id under mallory's signature shows alice's export: %s", list)
	}
	if c := r.Cookies(); len(c) != 1 || strings.HasPrefix(c[0].Value, aliceID+".") {
		t.Errorf("the list with a forged cookie set %v, want a new session of its own", c)
	}
}

func TestCrossOriginChangesAreRefusedAndAllowedOriginsGetCORS(t *testing.T) {
	be := startBackend(t)
	bff := startBFFWith(t, be.url, "", func(_ *relay.Config, h *httpapi.Config) {
		h.AllowedOrigins = []string{"http://localhost:5173"}
	})
	c := browser()
	tests := []struct {
		name   string
		header http.Header
		status int
	}{
		{"another site's Origin", http.Header{"Origin": {"https://evil.example"}}, http.StatusForbidden},
		{"another site's Referer", http.Header{"Referer": {"https://evil.example/page"}}, http.StatusForbidden},
		{"the BFF's own origin", http.Header{"Origin": {bff}}, http.StatusAccepted},
		{"an allowed dev server", http.Header{"Origin": {"http://localhost:5173"}}, http.StatusAccepted},
		{"no Origin (not a browser)", nil, http.StatusAccepted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, body := send(t, c, "POST", bff+"/api/exports", `{"rows":1,"durationMs":0}`, tt.header)
			if r.StatusCode != tt.status {
				t.Fatalf("status %d %s, want %d", r.StatusCode, body, tt.status)
			}
			if tt.status == http.StatusForbidden && !strings.Contains(body, `"FORBIDDEN_ORIGIN"`) {
				t.Errorf("body %s, want FORBIDDEN_ORIGIN", body)
			}
		})
	}
	pre, _ := send(t, c, "OPTIONS", bff+"/api/exports", "", http.Header{"Origin": {"http://localhost:5173"}, "Access-Control-Request-Method": {"POST"}})
	if pre.StatusCode != http.StatusNoContent || pre.Header.Get("Access-Control-Allow-Origin") != "http://localhost:5173" || pre.Header.Get("Access-Control-Allow-Credentials") != "true" {
		t.Errorf("preflight from the allowed origin: %d %v", pre.StatusCode, pre.Header)
	}
	other, _ := send(t, c, "GET", bff+"/api/exports", "", http.Header{"Origin": {"https://evil.example"}})
	if other.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("CORS granted to another origin: %v", other.Header)
	}
}

func TestASessionPastItsStreamLimitGets429(t *testing.T) {
	be := startBackend(t)
	bff := startBFFWith(t, be.url, "", func(_ *relay.Config, h *httpapi.Config) { h.MaxStreamsPerSession = 2 })
	j := create(t, bff, `{"rows":10,"durationMs":60000}`)
	url := bff + "/api/exports/" + j.Code + "/events"
	a, b := openStream(t, url, nil), openStream(t, url, nil)
	a.next(t)
	b.next(t)
	r, body := send(t, http.DefaultClient, "GET", url, "", nil)
	if r.StatusCode != http.StatusTooManyRequests || !strings.Contains(body, "TOO_MANY_STREAMS") {
		t.Errorf("third stream: %d %s, want 429 TOO_MANY_STREAMS", r.StatusCode, body)
	}
}

func TestCreatesPastTheSessionsRateGet429(t *testing.T) {
	be := startBackend(t)
	bff := startBFFWith(t, be.url, "", func(_ *relay.Config, h *httpapi.Config) { h.CreateRate, h.CreateBurst = 0.001, 2 })
	c := browser()
	var statuses []int
	for range 3 {
		r, _ := send(t, c, "POST", bff+"/api/exports", `{"rows":1,"durationMs":0}`, nil)
		statuses = append(statuses, r.StatusCode)
	}
	if fmt.Sprint(statuses) != "[202 202 429]" {
		t.Errorf("statuses %v, want two accepted then 429", statuses)
	}
}

// multiplexed reads /api/events as a browser tab would, into a channel.
func multiplexed(t *testing.T, c *http.Client, bff string) <-chan event {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, bff+"/api/events", nil)
	resp, err := c.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("/api/events: %v %v", resp, err)
	}
	ch := make(chan event, 1024)
	go func() {
		defer close(ch)
		defer func() { _ = resp.Body.Close() }()
		for ev, err := range sse.Read(resp.Body, nil) {
			if err != nil {
				return
			}
			var j job
			_ = json.Unmarshal([]byte(ev.Data), &j)
			ch <- event{ev.LastEventID, ev.Data, j}
		}
	}()
	return ch
}

func TestOneStreamPerTabCarriesEveryExportOfTheSession(t *testing.T) {
	be := startBackend(t)
	bff := startBFF(t, be.url, 5*time.Second)
	c := browser()
	decode := func(body string) job {
		var j job
		_ = json.Unmarshal([]byte(body), &j)
		return j
	}
	_, done := createExport(t, c, bff, `{"rows":10,"durationMs":0}`)
	for deadline := time.Now().Add(10 * time.Second); done.Status != "COMPLETED"; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) { // it must end before the tab opens its stream
			t.Fatalf("the 10-row export is still %s after 10 s", done.Status)
		}
		_, body := send(t, c, "GET", bff+"/api/exports/"+done.Code, "", nil)
		done = decode(body)
	}
	_, running := createExport(t, c, bff, `{"rows":2000,"durationMs":800}`)
	events := multiplexed(t, c, bff)
	_, later := createExport(t, c, bff, `{"rows":2000,"durationMs":800}`) // created after the stream opened

	final := map[string]job{}
	lastSeq := map[string]int64{}
	for len(final) < 3 {
		ev, ok := <-events
		if !ok {
			t.Fatalf("the stream ended; finished so far: %v", final)
		}
		j := ev.job
		if want := fmt.Sprintf("%s:%d", j.Code, j.Seq); ev.id != want {
			t.Errorf("event id %q, want %q", ev.id, want)
		}
		if j.Seq <= lastSeq[j.Code] {
			t.Errorf("%s: seq %d after %d", j.Code, j.Seq, lastSeq[j.Code])
		}
		lastSeq[j.Code] = j.Seq
		if j.Status == "COMPLETED" {
			final[j.Code] = j
		}
	}
	for _, j := range []job{done, running, later} {
		if _, ok := final[j.Code]; !ok {
			t.Errorf("export %s never reached COMPLETED on the tab's stream", j.Code)
		}
	}
	if u := be.upstream(t); u != (upstream{0, 1, 2}) {
		t.Errorf("the backend served %+v, want one multiplexed stream with 2 subscriptions (one per running export)", u)
	}
}

func TestNSubscribersOnMExportsMakeOneBackendStreamWithMSubscriptions(t *testing.T) {
	be := startBackend(t)
	bff := startBFF(t, be.url, 5*time.Second)
	const exports, perExport = 4, 5
	var streams []*stream
	for range exports {
		j := create(t, bff, `{"rows":1000,"durationMs":1000}`)
		for range perExport {
			s := openStream(t, bff+"/api/exports/"+j.Code+"/events", nil)
			s.next(t)
			streams = append(streams, s)
		}
	}
	for _, s := range streams {
		if evs := s.rest(t); len(evs) == 0 || evs[len(evs)-1].job.Status != "COMPLETED" {
			t.Fatalf("a subscriber did not end COMPLETED: %v", evs)
		}
	}
	if u := be.upstream(t); u != (upstream{0, 1, exports}) {
		t.Errorf("%d subscribers on %d exports made %+v upstream, want one multiplexed stream with %d subscriptions", exports*perExport, exports, u, exports)
	}
}

func TestABackendRestartWithinTheGiveUpWindowIsInvisibleToSubscribers(t *testing.T) {
	testenv.Slow(t)
	dir := t.TempDir()
	be := startBackend(t, "-data-dir", dir)
	bff := startBFF(t, be.url, 30*time.Second)
	var streams []*stream
	for range 3 {
		j := create(t, bff, `{"rows":2000,"durationMs":3000}`)
		for range 2 {
			streams = append(streams, openStream(t, bff+"/api/exports/"+j.Code+"/events", nil))
		}
	}
	firsts := make([]event, len(streams))
	for i, s := range streams {
		firsts[i] = s.next(t)
		for firsts[i].job.Progress == 0 {
			firsts[i] = s.next(t)
		}
	}
	_ = be.cmd.Process.Kill()
	_ = be.cmd.Wait()
	startBackend(t, "-data-dir", dir, "-addr", strings.TrimPrefix(be.url, "http://"))

	for i, s := range streams {
		evs := append([]event{firsts[i]}, s.rest(t)...)
		terminal := 0
		for k, ev := range evs {
			if k > 0 && ev.job.Seq <= evs[k-1].job.Seq {
				t.Errorf("subscriber %d: seq %d after %d", i, ev.job.Seq, evs[k-1].job.Seq)
			}
			if ev.job.Status == "COMPLETED" || ev.job.Status == "FAILED" || ev.job.Status == "CANCELLED" || ev.job.Status == "ERROR" {
				terminal++
			}
		}
		if last := evs[len(evs)-1].job; terminal != 1 || last.Status != "COMPLETED" {
			t.Errorf("subscriber %d: %d final events, last %s; want exactly one COMPLETED", i, terminal, last.Status)
		}
	}
}

func TestReadinessFollowsTheBackend(t *testing.T) {
	be := startBackend(t)
	bff := startBFF(t, be.url, 5*time.Second)
	if r, _ := send(t, browser(), "GET", bff+"/readyz", "", nil); r.StatusCode != http.StatusOK {
		t.Fatalf("readyz with the backend up: %d", r.StatusCode)
	}
	_ = be.cmd.Process.Kill()
	_ = be.cmd.Wait()
	if r, body := send(t, browser(), "GET", bff+"/readyz", "", nil); r.StatusCode != http.StatusBadGateway || !strings.Contains(body, "BACKEND_UNAVAILABLE") {
		t.Errorf("readyz with the backend down: %d %s, want 502 BACKEND_UNAVAILABLE", r.StatusCode, body)
	}
	if r, _ := send(t, browser(), "GET", bff+"/healthz", "", nil); r.StatusCode != http.StatusOK {
		t.Errorf("healthz does not depend on the backend: %d", r.StatusCode)
	}
}

func TestEveryResponseCarriesSecurityHeaders(t *testing.T) {
	be := startBackend(t)
	bff := startBFF(t, be.url, 5*time.Second)
	for _, path := range []string{"/", "/api/exports", "/api/exports/nope", "/healthz"} {
		r, _ := send(t, browser(), "GET", bff+path, "", nil)
		h := r.Header
		if h.Get("X-Content-Type-Options") != "nosniff" || h.Get("X-Frame-Options") != "DENY" ||
			!strings.Contains(h.Get("Content-Security-Policy"), "frame-ancestors 'none'") ||
			strings.Contains(h.Get("Content-Security-Policy"), "unsafe-inline") {
			t.Errorf("GET %s: security headers %v", path, h)
		}
	}
}

func TestAPagesFirstListStartsTheSessionItsCreatesShare(t *testing.T) {
	be := startBackend(t)
	bff := startBFF(t, be.url, 5*time.Second)
	c := browser()
	r, body := send(t, c, "GET", bff+"/api/exports", "", nil)
	if r.StatusCode != http.StatusOK || len(r.Cookies()) != 1 || body != `{"exports":[]}` {
		t.Fatalf("first list: %d %v %s; want an empty list and a session cookie", r.StatusCode, r.Cookies(), body)
	}
	done := make(chan struct{})
	for range 3 { // concurrent creates, as a page's "start 8 at once"
		go func() {
			defer func() { done <- struct{}{} }()
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, bff+"/api/exports", strings.NewReader(`{"rows":1,"durationMs":0}`))
			req.Header.Set("Content-Type", "application/json")
			if resp, err := c.Do(req); err == nil {
				_ = resp.Body.Close()
			}
		}()
	}
	for range 3 {
		<-done
	}
	var list struct{ Exports []job }
	_, body = send(t, c, "GET", bff+"/api/exports", "", nil)
	if err := json.Unmarshal([]byte(body), &list); err != nil || len(list.Exports) != 3 {
		t.Errorf("the session lists %d exports (%v), want the 3 created concurrently", len(list.Exports), err)
	}
}

func TestATabsStreamJoinsAJobCreatedThroughAnotherBFF(t *testing.T) {
	be := startBackend(t)
	resync := func(_ *relay.Config, h *httpapi.Config) { h.MultiplexResync = 50 * time.Millisecond }
	bffA, bffB := startBFFWith(t, be.url, "", resync), startBFFWith(t, be.url, "", resync)
	c := browser() // one session: both BFFs share the secret, cookies ignore ports
	send(t, c, "GET", bffA+"/api/exports", "", nil)
	events := multiplexed(t, c, bffA)
	_, body := send(t, c, "POST", bffB+"/api/exports", `{"rows":1000,"durationMs":500}`, nil)
	var j job
	if err := json.Unmarshal([]byte(body), &j); err != nil {
		t.Fatalf("create through B: %s", body)
	}
	deadline := time.After(15 * time.Second)
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatal("the tab's stream on A ended without the job created through B")
			}
			if ev.job.Code == j.Code && ev.job.Status == "COMPLETED" {
				return // A's stream carried the job B created, to its end
			}
		case <-deadline:
			t.Fatal("the tab's stream on A never carried the job created through B")
		}
	}
}

func TestAQuietRelayedStreamGetsTheBFFsOwnHeartbeats(t *testing.T) {
	be := startBackend(t, "-progress-interval", "1h") // the snapshot, then silence upstream
	bff := startBFFWith(t, be.url, "", func(_ *relay.Config, h *httpapi.Config) { h.Heartbeat = 50 * time.Millisecond })
	j := create(t, bff, `{"rows":10,"durationMs":60000}`)
	for _, path := range []string{"/api/exports/" + j.Code + "/events", "/api/events"} {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, bff+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		lines, pings := bufio.NewScanner(resp.Body), 0
		for pings < 2 && lines.Scan() {
			if lines.Text() == ": ping" {
				pings++
			}
		}
		_ = resp.Body.Close()
		cancel()
		if pings < 2 {
			t.Errorf("%s: %d heartbeats before the stream ended, want a steady beat", path, pings)
		}
	}
}

// fakeClock is a clock the test moves on; the BFF reads it from its
// request goroutines.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// sessionsOn is a manager of hour-long sessions on clk, signing with the
// first of keys.
func sessionsOn(t *testing.T, clk *fakeClock, keys ...[]byte) *session.Manager {
	t.Helper()
	m, err := session.New(keys, false, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	m.SetClock(clk.Now)
	return m
}

// startBFFOnClock is a BFF whose hour-long sessions run on clk.
func startBFFOnClock(t *testing.T, backendURL string, clk *fakeClock, keys ...[]byte) string {
	t.Helper()
	return startBFFWith(t, backendURL, "", func(_ *relay.Config, h *httpapi.Config) {
		h.Sessions = sessionsOn(t, clk, keys...)
	})
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)} }

// sessionCookie is the jar's session cookie value for bff.
func sessionCookie(t *testing.T, c *http.Client, bff string) string {
	t.Helper()
	u, _ := url.Parse(bff)
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name == session.CookieName {
			return ck.Value
		}
	}
	t.Fatal("no session cookie")
	return ""
}

// setSessionCookie is the session cookie resp sets, or "".
func setSessionCookie(resp *http.Response) string {
	for _, ck := range resp.Cookies() {
		if ck.Name == session.CookieName {
			return ck.Value
		}
	}
	return ""
}

func TestAnExpiredSessionGets401SessionExpiredWhereverItIsUsed(t *testing.T) {
	be := startBackend(t)
	clk := newFakeClock()
	bff := startBFFOnClock(t, be.url, clk, testSecret)
	c := browser()
	_, j := createExport(t, c, bff, `{"rows":10,"durationMs":0}`)
	expired := sessionCookie(t, c, bff)
	clk.Add(time.Hour - time.Second)
	// Sent by hand, so that the cookie re-issued to this request is not kept.
	asSent := http.Header{"Cookie": {session.CookieName + "=" + expired}}
	if r, b := send(t, &http.Client{}, "GET", bff+"/api/exports/"+j.Code, "", asSent); r.StatusCode != http.StatusOK {
		t.Fatalf("a second before the session's end: %d %s, want 200", r.StatusCode, b)
	}
	clk.Add(time.Second)
	// A route that wrongly serves the session streams: the timeout ends it.
	bounded := &http.Client{Jar: c.Jar, Timeout: 10 * time.Second}
	for _, route := range []struct{ method, path, body string }{
		{"GET", "/api/exports/" + j.Code + "/events", ""},
		{"GET", "/api/events", ""},
		{"GET", "/api/exports/" + j.Code + "/file", ""},
		{"GET", "/api/exports/" + j.Code, ""},
		{"GET", "/api/exports", ""},
		{"DELETE", "/api/exports/" + j.Code, ""},
		{"POST", "/api/exports", `{"rows":1,"durationMs":0}`},
	} {
		r, body := send(t, bounded, route.method, bff+route.path, route.body, nil)
		var got struct {
			Error struct{ Code, Message string }
		}
		_ = json.Unmarshal([]byte(body), &got)
		if r.StatusCode != http.StatusUnauthorized || got.Error.Code != "SESSION_EXPIRED" || got.Error.Message == "" {
			t.Errorf("%s %s with an expired session: %d %s, want 401 SESSION_EXPIRED", route.method, route.path, r.StatusCode, body)
		}
		if set := setSessionCookie(r); set != "" {
			t.Errorf("%s %s with an expired session set a cookie %q: only POST /api/session replaces it", route.method, route.path, set)
		}
	}
	if got := sessionCookie(t, c, bff); got != expired {
		t.Fatalf("the expired cookie was replaced: %q", got)
	}

	r, body := send(t, c, "POST", bff+"/api/session", "", nil)
	if r.StatusCode != http.StatusNoContent || setSessionCookie(r) == "" {
		t.Fatalf("POST /api/session: %d %s, cookie %q; want 204 and a new cookie", r.StatusCode, body, setSessionCookie(r))
	}
	if _, list := send(t, c, "GET", bff+"/api/exports", "", nil); strings.Contains(list, j.Code) {
		t.Errorf("the new session lists the expired one's export: %s", list)
	}
	if r, b := send(t, c, "GET", bff+"/api/exports/"+j.Code+"/events", "", nil); r.StatusCode != http.StatusNotFound {
		t.Errorf("the expired session's export from the new session: %d %s, want 404", r.StatusCode, b)
	}
}

// An active browser's cookie is re-issued once a quarter of its lifetime
// has gone by: the same session, so the browser keeps its exports past
// the first cookie's end.
func TestAnActiveBrowserKeepsItsSessionPastTheFirstCookiesLifetime(t *testing.T) {
	be := startBackend(t)
	clk := newFakeClock()
	bff := startBFFOnClock(t, be.url, clk, testSecret)
	c := browser()
	_, j := createExport(t, c, bff, `{"rows":10,"durationMs":0}`)
	first := sessionCookie(t, c, bff)
	id, _, _ := strings.Cut(first, ".")

	clk.Add(14 * time.Minute)
	if r, _ := send(t, c, "GET", bff+"/api/exports", "", nil); setSessionCookie(r) != "" {
		t.Errorf("before a quarter of the lifetime: cookie re-issued %q", setSessionCookie(r))
	}
	clk.Add(2 * time.Minute)
	r, _ := send(t, c, "GET", bff+"/api/exports", "", nil)
	if set := setSessionCookie(r); !strings.HasPrefix(set, id+".") || set == first {
		t.Fatalf("past a quarter of the lifetime: cookie %q, want %s re-issued", set, id)
	}
	clk.Add(50 * time.Minute) // 66 minutes after the first cookie, 50 after the second
	if r, b := send(t, c, "GET", bff+"/api/exports/"+j.Code, "", nil); r.StatusCode != http.StatusOK {
		t.Errorf("the re-issued session, past the first cookie's end: %d %s, want its export", r.StatusCode, b)
	}
	plain := &http.Client{}
	old := http.Header{"Cookie": {session.CookieName + "=" + first}}
	if r, b := send(t, plain, "GET", bff+"/api/exports/"+j.Code, "", old); r.StatusCode != http.StatusUnauthorized {
		t.Errorf("the first cookie, past its lifetime: %d %s, want 401", r.StatusCode, b)
	}
}

// Key rotation: a BFF listing a new key first and the old one after it
// accepts the old key's cookies and re-signs them with the new key; once
// the old key is gone, its cookies are no session at all.
func TestCookiesOfAListedOldKeyAreReissuedAndOfARetiredKeyRefused(t *testing.T) {
	be := startBackend(t)
	clk := newFakeClock()
	oldKey, newKey := testSecret, []byte(strings.Repeat("n", 32))
	before := startBFFOnClock(t, be.url, clk, oldKey)
	during := startBFFOnClock(t, be.url, clk, newKey, oldKey)
	after := startBFFOnClock(t, be.url, clk, newKey)
	c := browser()
	_, j := createExport(t, c, before, `{"rows":10,"durationMs":0}`)
	oldCookie := http.Header{"Cookie": {session.CookieName + "=" + sessionCookie(t, c, before)}}
	plain := &http.Client{}

	r, b := send(t, plain, "GET", during+"/api/exports/"+j.Code, "", oldCookie)
	resigned := setSessionCookie(r)
	if r.StatusCode != http.StatusOK || resigned == "" {
		t.Fatalf("the old key's cookie, old key listed: %d %s, cookie %q; want 200 and a re-signed cookie", r.StatusCode, b, resigned)
	}
	if r, b := send(t, plain, "GET", after+"/api/exports/"+j.Code, "", http.Header{"Cookie": {session.CookieName + "=" + resigned}}); r.StatusCode != http.StatusOK {
		t.Errorf("the re-signed cookie once the old key is gone: %d %s, want 200", r.StatusCode, b)
	}
	if r, b := send(t, plain, "GET", after+"/api/exports/"+j.Code, "", oldCookie); r.StatusCode != http.StatusNotFound {
		t.Errorf("the old key's cookie once the old key is gone: %d %s, want 404 (no session)", r.StatusCode, b)
	}
}

// testOpenAPISessionExpiry is TestOpenAPI's expired session: the 401 of
// every route that uses the session, and POST /api/session.
func testOpenAPISessionExpiry(t *testing.T) {
	be := startBackend(t)
	clk := newFakeClock()
	bff := startBFFOnClock(t, be.url, clk, testSecret)
	c := loadContract(t, bff, be.url)
	api := bff + "/api/exports"
	j := c.create(t, api, `{"rows":10,"durationMs":0}`, nil)
	clk.Add(time.Hour)
	expired := func(name, method, url, body string) apiCase {
		return apiCase{name: name + ", expired", method: method, url: url, body: body, status: http.StatusUnauthorized, code: "SESSION_EXPIRED", validRequest: true}
	}
	c.run(t, []apiCase{
		expired("create", "POST", api, `{"rows":1,"durationMs":0}`),
		expired("list", "GET", api, ""),
		expired("get", "GET", api+"/"+j.Code, ""),
		expired("cancel", "DELETE", api+"/"+j.Code, ""),
		expired("job stream", "GET", api+"/"+j.Code+"/events", ""),
		expired("session stream", "GET", bff+"/api/events", ""),
		expired("file", "GET", api+"/"+j.Code+"/file", ""),
		{name: "new session, another origin", method: "POST", url: bff + "/api/session", header: http.Header{"Origin": {"https://evil.example"}}, status: http.StatusForbidden, code: "FORBIDDEN_ORIGIN", validRequest: true},
		{name: "new session", method: "POST", url: bff + "/api/session", status: http.StatusNoContent, validRequest: true},
		{name: "list, the new session", method: "GET", url: api, status: http.StatusOK, validRequest: true},
	})
}
