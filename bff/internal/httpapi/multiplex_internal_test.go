package httpapi

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/exportstream/exportstream/bff/internal/backend"
)

// A stream whose browser stopped reading is not filled, so its re-lists
// pile up until it is; with STREAM_WRITE_TIMEOUT=0 that is never. The
// re-lists are driven here directly, as the resync loop's ticks would.
func TestAStalledTabKeepsOnlyTheLatestListingWhateverTheNumberOfResyncs(t *testing.T) {
	var lists atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/exports" {
			http.NotFound(w, r)
			return
		}
		n := lists.Add(1) // each listing is newer than the last
		w.Header().Set("Content-Type", "application/json")
		_, _ = fmt.Fprintf(w, `{"exports":[{"code":"a","seq":%d,"status":"COMPLETED"},{"code":"b","seq":%d,"status":"FAILED"}]}`, n, n)
	}))
	t.Cleanup(srv.Close)
	be, err := backend.New(srv.URL, "")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Config: Config{Backend: be, Logger: slog.New(slog.DiscardHandler), Metrics: NewMetrics()}}
	var wakes atomic.Int64
	m := &sessionStream{s: s, sid: "sid", sent: map[string]int64{}, wake: func() { wakes.Add(1) }} // listed jobs are terminal: none is followed

	const ticks = 100
	for range ticks {
		m.relist(t.Context())
	}
	if wakes.Load() != ticks {
		t.Fatalf("%d wakes for %d re-lists, want one each", wakes.Load(), ticks)
	}
	m.mu.Lock()
	pending := len(m.listed)
	m.mu.Unlock()
	if pending != 2 {
		t.Errorf("%d listed jobs pending after %d re-lists of 2 jobs, want the latest listing's 2", pending, ticks)
	}
	out, _ := m.Fill(nil)
	want := fmt.Sprintf("id: a:%d\n", ticks)
	if got := strings.Count(string(out), "data: "); got != 2 || !strings.Contains(string(out), want) {
		t.Errorf("the reader, back, is sent %d events:\n%s\nwant each job once, at the latest listing's seq (%q)", got, out, want)
	}
}
