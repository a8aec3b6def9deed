package httpapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/exportstream/exportstream/backend/internal/httpapi"
	"github.com/exportstream/exportstream/backend/internal/job"
	"github.com/exportstream/exportstream/backend/internal/worker"
)

func scenariosOff(h *httpapi.Config, _ *worker.Config) { h.Scenarios = false }

func TestScriptedCreatesGet400WhenScenariosAreOff(t *testing.T) {
	base := startBackend(t, scenariosOff)
	for _, body := range []string{
		`{"rows":5,"durationMs":1,"failAt":50}`,
		`{"rows":5,"durationMs":1,"failAt":50,"errorCode":"QUOTA"}`,
		`{"rows":5,"durationMs":1,"startDelayMs":10}`,
		`{"rows":5,"durationMs":1,"stallAt":10,"stallMs":10}`,
		`{"rows":5,"durationMs":1,"expireAfterMs":10}`,
		`{"rows":5,"rowsPerSecond":10}`,
		`{"rows":5,"durationMs":1,"dropStreamAt":50}`,
	} {
		resp, err := http.Post(base+"/v1/exports", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		assertError(t, resp, http.StatusBadRequest, "SCENARIOS_DISABLED")
	}
	if _, resp := createExport(t, base, `{"rows":5,"durationMs":1}`); resp.StatusCode != http.StatusAccepted {
		t.Errorf("a plain create: status %d, want 202", resp.StatusCode)
	}
}

func TestStartDelayMsKeepsTheExportPendingThatLong(t *testing.T) {
	base := startBackend(t)
	created, _ := createExport(t, base, `{"rows":100,"durationMs":50,"startDelayMs":700}`)
	_, _, events := readEvents(t, base+"/v1/exports/"+created.Code+"/events", nil)
	if first := events[0].job; first.Status != job.StatusPending {
		t.Fatalf("first event %s, want PENDING", first.Status)
	}
	for _, ev := range events {
		if ev.job.Status == job.StatusInProgress {
			if waited := ev.job.UpdatedAt.Sub(created.CreatedAt); waited < 700*time.Millisecond {
				t.Errorf("IN_PROGRESS %v after the create, want ≥ 700ms", waited)
			}
			break
		}
	}
	if last := events[len(events)-1].job; last.Status != job.StatusCompleted {
		t.Errorf("last event %s, want COMPLETED", last.Status)
	}
}

func TestFailAtWithErrorCodeEndsFailedWithThatCode(t *testing.T) {
	base := startBackend(t)
	created, _ := createExport(t, base, `{"rows":1000,"durationMs":1000,"failAt":30,"errorCode":"QUOTA_EXCEEDED"}`)
	_, _, events := readEvents(t, base+"/v1/exports/"+created.Code+"/events", nil)
	last := events[len(events)-1].job
	if last.Status != job.StatusFailed || last.Error == nil || last.Error.Code != "QUOTA_EXCEEDED" || last.Progress != 30 {
		t.Fatalf("last event %+v (error %+v), want FAILED at 30 %% with QUOTA_EXCEEDED", last, last.Error)
	}
}

func TestRowsPerSecondPacesTheExport(t *testing.T) {
	base := startBackend(t)
	created, _ := createExport(t, base, `{"rows":600,"rowsPerSecond":1000}`)
	_, _, events := readEvents(t, base+"/v1/exports/"+created.Code+"/events", nil)
	var started time.Time
	for _, ev := range events {
		if ev.job.Status == job.StatusInProgress && started.IsZero() {
			started = ev.job.UpdatedAt
		}
	}
	last := events[len(events)-1].job
	if last.Status != job.StatusCompleted || started.IsZero() {
		t.Fatalf("events end %s (started %v), want COMPLETED after IN_PROGRESS", last.Status, started)
	}
	// 600 rows at 1,000 a second: 0.6 s, less the first chunk's share.
	if took := last.UpdatedAt.Sub(started); took < 500*time.Millisecond {
		t.Errorf("generation took %v, want ≈ 600ms", took)
	}
}

// A stall stops progress events for stallMs once progress reaches stallAt
// (the stream stays open and keeps its heartbeats), then the export goes
// on to COMPLETED.
func TestStallStopsProgressAtStallAtWhileHeartbeatsGoOn(t *testing.T) {
	base := startBackend(t, func(h *httpapi.Config, _ *worker.Config) { h.Heartbeat = 100 * time.Millisecond })
	created, _ := createExport(t, base, `{"rows":1000,"durationMs":400,"stallAt":50,"stallMs":900}`)
	lines := readRawStream(t, base+"/v1/exports/"+created.Code+"/events")
	var at, next job.Job // the first snapshot at or past 50 %, and the one after it
	pings := 0
	for _, l := range lines {
		switch {
		case strings.HasPrefix(l, ": ping") && at.Code != "" && next.Code == "":
			pings++
		case strings.HasPrefix(l, "data: "):
			j := decodeJob(t, strings.TrimPrefix(l, "data: "))
			if at.Code == "" && j.Progress >= 50 {
				at = j
			} else if at.Code != "" && next.Code == "" {
				next = j
			}
		}
	}
	if at.Code == "" || next.Code == "" {
		t.Fatalf("no event at or past 50 %% followed by another in %q", lines)
	}
	if at.Status != job.StatusInProgress {
		t.Errorf("the event at %d %% is %s, want IN_PROGRESS", at.Progress, at.Status)
	}
	if gap := next.UpdatedAt.Sub(at.UpdatedAt); gap < 900*time.Millisecond {
		t.Errorf("progress %d → %d in %v, want a stall of ≥ 900ms", at.Progress, next.Progress, gap)
	}
	if pings == 0 {
		t.Error("no heartbeat during the stall")
	}
	if last := decodeJob(t, strings.TrimPrefix(lastData(lines), "data: ")); last.Status != job.StatusCompleted {
		t.Errorf("ended %s, want COMPLETED", last.Status)
	}
}

func TestExpireAfterMsMakesTheFileGoneThen(t *testing.T) {
	base := startBackend(t)
	created, _ := createExport(t, base, `{"rows":10,"durationMs":0,"expireAfterMs":1500}`)
	_, _, events := readEvents(t, base+"/v1/exports/"+created.Code+"/events", nil)
	done := events[len(events)-1].job
	if done.File == nil {
		t.Fatalf("ended %s without a file", done.Status)
	}
	if d := done.File.ExpiresAt.Sub(done.UpdatedAt); d < 1400*time.Millisecond || d > 1600*time.Millisecond {
		t.Errorf("expiresAt %v after completion, want 1.5s", d)
	}
	// Downloads answer 200 until expiresAt, then 410: asked until the 410
	// comes (bounded), each answer checked against the time it came at.
	url := base + "/v1/exports/" + created.Code + "/file"
	for deadline := time.Now().Add(10 * time.Second); ; {
		status := getStatus(t, url)
		now := time.Now()
		if status == http.StatusGone {
			if now.Before(done.File.ExpiresAt) {
				t.Errorf("410 at %v, before expiresAt %v", now, done.File.ExpiresAt)
			}
			break
		}
		if status != http.StatusOK {
			t.Fatalf("download: status %d, want 200 then 410", status)
		}
		if now.After(deadline) {
			t.Fatal("still 200 long after expiresAt")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// dropStreamAt: the stream ends right after the first snapshot at or past
// it; resumed by Last-Event-ID, it goes on to COMPLETED, cut no more, no
// event twice.
func TestDropStreamAtCutsTheStreamOnceAndItResumesByLastEventID(t *testing.T) {
	base := startBackend(t)
	created, _ := createExport(t, base, `{"rows":1000,"durationMs":1000,"dropStreamAt":40}`)
	url := base + "/v1/exports/" + created.Code + "/events"
	_, _, first := readEvents(t, url, nil)
	cut := first[len(first)-1]
	if cut.job.Status != job.StatusInProgress || cut.job.Progress < 40 || len(first) < 2 || first[len(first)-2].job.Progress >= 40 {
		t.Fatalf("first stream ended at %+v after %d events, want right after the first snapshot at or past 40 %%", cut.job, len(first))
	}
	_, _, rest := readEvents(t, url, http.Header{"Last-Event-ID": {strconv.FormatInt(cut.id, 10)}})
	if len(rest) == 0 || rest[len(rest)-1].job.Status != job.StatusCompleted {
		t.Fatalf("the resumed stream: %d events, want it to go on to COMPLETED", len(rest))
	}
	prev := cut.id
	for _, ev := range rest {
		if ev.id <= prev {
			t.Errorf("resumed: id %d after %d", ev.id, prev)
		}
		prev = ev.id
	}
}

func getStatus(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}

// readRawStream reads an event stream's lines, comments included, until
// the server ends it.
func readRawStream(t *testing.T, url string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	var lines []string
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	return lines
}

func lastData(lines []string) string {
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.HasPrefix(lines[i], "data: ") {
			return lines[i]
		}
	}
	return ""
}

func decodeJob(t *testing.T, data string) job.Job {
	t.Helper()
	var j job.Job
	if err := json.Unmarshal([]byte(data), &j); err != nil {
		t.Fatalf("event data %q: %v", data, err)
	}
	return j
}
