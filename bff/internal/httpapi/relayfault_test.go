package httpapi_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/exportstream/exportstream/bff/internal/httpapi"
	"github.com/exportstream/exportstream/bff/internal/relay"
)

// scenariosOn runs the BFF with SCENARIOS=on and a 2 s UPSTREAM_GIVEUP.
func scenariosOn(r *relay.Config, h *httpapi.Config) {
	r.GiveUp, h.GiveUp, h.Scenarios = 2*time.Second, 2*time.Second, true
}

// ?fault=relay-gives-up relays as usual for faultAfterMs, then nothing for
// giveUpMs, then the ERROR the relay sends when the backend is really gone
// (compared here with a stream whose backend is killed), and the stream ends.
func TestARelayFaultEndsTheStreamWithTheGiveUpsERROR(t *testing.T) {
	be := startBackend(t)
	bff := startBFFWith(t, be.url, "", scenariosOn)
	// Progress every 1 % of 20 s: an event each 200 ms.
	faultedJob := create(t, bff, `{"rows":1000,"durationMs":20000}`)
	opened := time.Now()
	faulted := openStream(t, bff+"/api/exports/"+faultedJob.Code+"/events?fault=relay-gives-up&faultAfterMs=300&giveUpMs=1000", nil)
	evs := faulted.rest(t)
	took := time.Since(opened)
	if len(evs) < 2 || evs[0].job.Status == "ERROR" {
		t.Fatalf("events %v: want the job's snapshots, then ERROR", evs)
	}
	for _, ev := range evs[:len(evs)-1] {
		// Nothing made after the fault (300 ms, and a progress interval
		// of slack for a loaded machine) is relayed.
		if ev.job.UpdatedAt.After(opened.Add(700 * time.Millisecond)) {
			t.Errorf("relayed %s (made %v after the stream opened) after the fault", ev.data, ev.job.UpdatedAt.Sub(opened))
		}
	}
	last := evs[len(evs)-1]
	if last.job.Status != "ERROR" || last.job.Code != faultedJob.Code || last.job.Error == nil || last.job.Error.Code != "UPSTREAM_UNAVAILABLE" {
		t.Errorf("last event %s, want ERROR UPSTREAM_UNAVAILABLE", last.data)
	}
	if took < 1300*time.Millisecond {
		t.Errorf("ERROR after %v, want after faultAfterMs + giveUpMs = 1.3s", took)
	}

	// The same ERROR as when the backend dies under a stream.
	backendLost := create(t, bff, `{"rows":1000,"durationMs":60000}`)
	s := openStream(t, bff+"/api/exports/"+backendLost.Code+"/events", nil)
	s.next(t)
	if err := be.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	realEvs := s.rest(t)
	want := strings.ReplaceAll(realEvs[len(realEvs)-1].data, backendLost.Code, faultedJob.Code)
	if last.data != want {
		t.Errorf("the fault's ERROR\n  %s\nthe backend's death's\n  %s", last.data, want)
	}
}

// A job that ends while the relay is "lost" is still reported as the
// give-up reports it: the browser never hears of the end.
func TestARelayFaultHidesAnEndThatComesWhileTheUpstreamIsLost(t *testing.T) {
	be := startBackend(t)
	bff := startBFFWith(t, be.url, "", scenariosOn)
	j := create(t, bff, `{"rows":100,"durationMs":500}`)
	evs := openStream(t, bff+"/api/exports/"+j.Code+"/events?fault=relay-gives-up&faultAfterMs=100&giveUpMs=1500", nil).rest(t)
	for _, ev := range evs[:len(evs)-1] {
		if ev.job.Status == "COMPLETED" {
			t.Errorf("relayed %s while the upstream was lost", ev.data)
		}
	}
	if last := evs[len(evs)-1].job; last.Status != "ERROR" {
		t.Errorf("ended with %s, want the give-up's ERROR", evs[len(evs)-1].data)
	}
}

func TestARelayFaultOnATabsStreamGivesEveryRunningJobItsERROR(t *testing.T) {
	be := startBackend(t, "-workers", "4") // the short job runs beside the two long ones
	bff := startBFFWith(t, be.url, "", scenariosOn)
	done := create(t, bff, `{"rows":10,"durationMs":0}`)
	openStream(t, bff+"/api/exports/"+done.Code+"/events", nil).rest(t) // to its COMPLETED
	running := map[string]bool{}
	for range 2 {
		running[create(t, bff, `{"rows":1000,"durationMs":60000}`).Code] = true
	}
	// It ends while the upstream is "lost": the tab never hears of it but its ERROR.
	endsUnheard := create(t, bff, `{"rows":100,"durationMs":600}`).Code
	running[endsUnheard] = true
	evs := openStream(t, bff+"/api/events?fault=relay-gives-up&faultAfterMs=100&giveUpMs=1500", nil).rest(t)
	errored := map[string]bool{}
	for _, ev := range evs {
		if ev.job.Code == endsUnheard && ev.job.Status == "COMPLETED" {
			t.Errorf("relayed %s while the upstream was lost", ev.data)
		}
		if ev.job.Status == "ERROR" {
			errored[ev.job.Code] = ev.job.Error != nil && ev.job.Error.Code == "UPSTREAM_UNAVAILABLE"
		}
	}
	if len(errored) != len(running) {
		t.Errorf("ERROR for %v, want exactly the running jobs %v", errored, running)
	}
	for code := range running {
		if !errored[code] {
			t.Errorf("running job %s: no ERROR UPSTREAM_UNAVAILABLE", code)
		}
	}
}

func TestRelayFaultsAreRefusedWhenScenariosAreOffOrMalformed(t *testing.T) {
	be := startBackend(t)
	off := startBFF(t, be.url, 2*time.Second)
	on := startBFFWith(t, be.url, "", scenariosOn)
	j := create(t, on, `{"rows":1000,"durationMs":60000}`)
	tests := []struct{ name, url, code string }{
		{"off, per export", off + "/api/exports/" + j.Code + "/events?fault=relay-gives-up", "SCENARIOS_DISABLED"},
		{"off, per tab", off + "/api/events?fault=relay-gives-up", "SCENARIOS_DISABLED"},
		{"an unknown fault", on + "/api/exports/" + j.Code + "/events?fault=backend-on-fire", "INVALID_FAULT"},
		{"a give-up past UPSTREAM_GIVEUP", on + "/api/events?fault=relay-gives-up&giveUpMs=2001", "INVALID_FAULT"},
		{"a negative faultAfterMs", on + "/api/events?fault=relay-gives-up&faultAfterMs=-1", "INVALID_FAULT"},
		{"faultAfterMs not a number", on + "/api/events?fault=relay-gives-up&faultAfterMs=soon", "INVALID_FAULT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := http.Get(tt.url)
			if err != nil {
				t.Fatal(err)
			}
			assertErrorBody(t, resp, http.StatusBadRequest, tt.code)
		})
	}
}

func assertErrorBody(t *testing.T, resp *http.Response, status int, code string) {
	t.Helper()
	defer func() { _ = resp.Body.Close() }()
	var body struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("error body is not JSON: %v", err)
	}
	if resp.StatusCode != status || body.Error.Code != code || body.Error.Message == "" {
		t.Errorf("got %d %+v, want %d %s", resp.StatusCode, body.Error, status, code)
	}
}

// The backend's dropStreamAt scenario reaches browsers through the one
// multiplexed upstream: the browser's stream ends right after the first
// snapshot at or past it, and resumed by Last-Event-ID goes on to
// COMPLETED, cut no more, no event twice. A tab's stream is cut the same.
func TestDropStreamAtCutsTheBrowsersStreamsOnceThroughTheBFF(t *testing.T) {
	be := startBackend(t)
	bff := startBFF(t, be.url, 5*time.Second)
	j := create(t, bff, `{"rows":1000,"durationMs":1500,"dropStreamAt":40}`)
	tab := openStream(t, bff+"/api/events", nil)
	url := bff + "/api/exports/" + j.Code + "/events"
	first := openStream(t, url, nil).rest(t)
	cut := first[len(first)-1]
	if cut.job.Status != "IN_PROGRESS" || cut.job.Progress < 40 || len(first) < 2 || first[len(first)-2].job.Progress >= 40 {
		t.Fatalf("first stream ended at %s after %d events, want right after the first snapshot at or past 40 %%", cut.data, len(first))
	}
	rest := openStream(t, url, http.Header{"Last-Event-ID": {cut.id}}).rest(t)
	if len(rest) == 0 || rest[len(rest)-1].job.Status != "COMPLETED" {
		t.Fatalf("the resumed stream: %d events, want it to go on to COMPLETED", len(rest))
	}
	prev := cut.job.Seq
	for _, ev := range rest {
		if ev.job.Seq <= prev {
			t.Errorf("resumed: seq %d after %d", ev.job.Seq, prev)
		}
		prev = ev.job.Seq
	}
	tabEvents := tab.rest(t) // ends at the cut: a tab's stream does not end otherwise
	if last := tabEvents[len(tabEvents)-1].job; last.Code != j.Code || last.Progress < 40 || last.Status != "IN_PROGRESS" {
		t.Errorf("the tab's stream ended after %+v, want right after the job crossed 40 %%", last)
	}
}
