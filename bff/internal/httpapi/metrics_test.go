package httpapi_test

import (
	"io"
	"net/http"
	"regexp"
	"testing"
)

// The client shares one /api/events per browser across its tabs; its browser
// test checks that by this counter, so each accepted stream counts once.
func TestSessionStreamsOpenedCountsEachAcceptedTabStream(t *testing.T) {
	bff := startBFFOnStub(t)
	if got := metric(t, bff, "exportstream_bff_session_streams_opened_total"); got != "0" {
		t.Fatalf("before any stream: %s, want 0", got)
	}
	a, b := browser(), browser()
	holdTab(t, a, bff, nil)
	holdTab(t, a, bff, nil)
	holdTab(t, b, bff, nil)
	if got := metric(t, bff, "exportstream_bff_session_streams_opened_total"); got != "3" {
		t.Errorf("after three tab streams of two browsers: %s, want 3", got)
	}
}

// metric reads one series of a server's /metrics (the BFF's or the backend's).
func metric(t *testing.T, base, name string) string {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^` + name + ` (\S+)$`).FindSubmatch(body)
	if m == nil {
		t.Fatalf("no %s in %s/metrics:\n%s", name, base, body)
	}
	return string(m[1])
}
