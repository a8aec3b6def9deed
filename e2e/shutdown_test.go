package e2e_test

import (
	"encoding/json"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"syscall"
	"testing"

	sse "github.com/tmaxmax/go-sse"

	"github.com/exportstream/exportstream/e2e/stack"
)

func TestSIGTERMEndsBrowserStreamsCleanlyAndExitsZero(t *testing.T) {
	backend := stack.Backend(t, "-memory")
	bff := stack.BFF(t, backend.URL)
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	resp, err := c.Post(bff.URL+"/api/exports", "application/json", strings.NewReader(`{"rows":10,"durationMs":60000}`))
	if err != nil {
		t.Fatal(err)
	}
	var j struct{ Code string }
	_ = json.NewDecoder(resp.Body).Decode(&j)
	_ = resp.Body.Close()
	stream, err := c.Get(bff.URL + "/api/exports/" + j.Code + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = stream.Body.Close() }()
	events := 0
	for _, err := range sse.Read(stream.Body, nil) {
		if err != nil {
			t.Fatalf("stream: %v", err)
		}
		if events++; events == 1 {
			_ = bff.Signal(syscall.SIGTERM)
		}
	}
	// sse.Read returns without error only at a clean end of the response.
	if err := bff.Wait(); err != nil {
		t.Errorf("bff exited with %v after SIGTERM, want 0", err)
	}
}
