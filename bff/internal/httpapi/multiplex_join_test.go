package httpapi_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/exportstream/exportstream/bff/internal/session"
)

// Found by the fault campaign (chaos/): under faults a create's answer
// came back after the tab's stream had listed the job as already ended;
// joining it then sent its terminal snapshot a second time.
func TestAJobWhoseCreateAnswersAfterTheTabListedItEndedIsNotSentTwice(t *testing.T) {
	be := startBackend(t)
	target, _ := url.Parse(be.url)
	// A gate in front of the backend holds the answer of the second
	// create until the test releases it.
	created, release := make(chan string, 1), make(chan struct{})
	var creates atomic.Int32
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.ModifyResponse = func(r *http.Response) error {
		if r.Request.Method != http.MethodPost || r.Request.URL.Path != "/v1/exports" {
			return nil
		}
		if creates.Add(1) != 2 {
			return nil
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return err
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		var j job
		_ = json.Unmarshal(body, &j)
		created <- j.Code
		<-release
		return nil
	}
	gate := httptest.NewServer(proxy)
	t.Cleanup(gate.Close)
	bff := startBFF(t, gate.URL, 5*time.Second)

	c := browser()
	send(t, c, "POST", bff+"/api/exports", `{"rows":10,"durationMs":0}`, nil) // the session
	sid := ""
	u, _ := url.Parse(bff)
	for _, k := range c.Jar.Cookies(u) {
		if k.Name == session.CookieName {
			sid, _, _ = strings.Cut(k.Value, ".")
		}
	}
	answered := make(chan struct{})
	go func() {
		defer close(answered)
		send(t, c, "POST", bff+"/api/exports", `{"rows":10,"durationMs":0}`, nil)
	}()
	code := <-created
	// It ends while its create's answer is held, before the tab connects.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, be.url+"/v1/exports/"+code, nil)
		req.Header.Set("X-Export-Owner", sid)
		var j job
		if resp, err := http.DefaultClient.Do(req); err == nil {
			_ = json.NewDecoder(resp.Body).Decode(&j)
			_ = resp.Body.Close()
		}
		if j.Status == "COMPLETED" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the held export is %q after 10 s", j.Status)
		}
	}
	events := multiplexed(t, c, bff)
	terminal := 0
	next := func(want string) {
		t.Helper()
		for {
			select {
			case ev, ok := <-events:
				if !ok {
					t.Fatal("the stream ended")
				}
				if ev.job.Code == code && ev.job.Status == "COMPLETED" {
					terminal++
				}
				if ev.job.Code == want && ev.job.Status == "COMPLETED" {
					return
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("no COMPLETED for %s within 10 s", want)
			}
		}
	}
	next(code) // from the tab's listing
	close(release)
	<-answered // the BFF has joined the job to the tab's stream
	// A later export's end comes after anything the join would send.
	_, later := createExport(t, c, bff, `{"rows":10,"durationMs":0}`)
	next(later.Code)
	if terminal != 1 {
		t.Errorf("the tab's stream sent %s's COMPLETED %d times, want once", code, terminal)
	}
}
