package e2e_test

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"testing"

	"github.com/exportstream/exportstream/e2e/stack"
)

// startBackend runs the backend on dataDir with 8 workers and extra flags.
func startBackend(t *testing.T, dataDir string, extra ...string) *stack.Proc {
	t.Helper()
	return stack.Backend(t, append([]string{"-data-dir", dataDir, "-workers", "8"}, extra...)...)
}

// interruptAndResume creates jobs, stops the backend mid-generation with
// stop, restarts it on the same data directory and checks that every
// client, resuming with its Last-Event-ID, reaches COMPLETED with no
// duplicate and a file that verifies.
func interruptAndResume(t *testing.T, stop func(*stack.Proc)) {
	dir := t.TempDir()
	p := startBackend(t, dir)
	const rows = 3000
	var jobs []stack.Job
	var streams []<-chan stack.Job
	for range 6 {
		j := stack.Create(t, p.URL, fmt.Sprintf(`{"rows":%d,"durationMs":4000}`, rows))
		jobs = append(jobs, j)
		streams = append(streams, stack.Watch(t, p.URL, j.Code, 0))
	}
	lastSeen := make([]int64, len(jobs))
	for i, s := range streams {
		for j := range s { // mid-generation: some progress, not the end
			lastSeen[i] = j.Seq
			if j.Status == stack.StatusInProgress && j.Progress > 0 {
				break
			}
		}
	}
	stop(p)
	for i, s := range streams {
		for j := range s { // whatever was in flight before the stop
			if j.Seq <= lastSeen[i] || j.Status.Terminal() {
				t.Fatalf("job %d: got seq %d (%s) after %d before the restart", i, j.Seq, j.Status, lastSeen[i])
			}
			lastSeen[i] = j.Seq
		}
	}

	p = startBackend(t, dir)
	for i, j := range jobs {
		prev, terminal := lastSeen[i], 0
		var end stack.Job
		for ev := range stack.Watch(t, p.URL, j.Code, lastSeen[i]) {
			if ev.Seq <= prev {
				t.Errorf("job %d: seq %d after %d across the restart (duplicate or going back)", i, ev.Seq, prev)
			}
			if ev.Status.Terminal() {
				terminal++
			}
			prev, end = ev.Seq, ev
		}
		if terminal != 1 || end.Status != stack.StatusCompleted {
			t.Fatalf("job %d: %d terminal events, last %s (%+v); want exactly one COMPLETED", i, terminal, end.Status, end.Error)
		}
		resp, err := http.Get(p.URL + end.File.URL)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		sum := sha256.Sum256(body)
		if got, want := hex.EncodeToString(sum[:]), stack.ExpectedSHA256(j.Code, rows); got != want || end.File.SHA256 != want {
			t.Errorf("job %d: downloaded sha256 %s, announced %s, want %s", i, got, end.File.SHA256, want)
		}
	}
}

func TestAfterKill9EveryJobResumesAndCompletesWithoutDuplicates(t *testing.T) {
	interruptAndResume(t, (*stack.Proc).Kill)
}

func TestSIGTERMEndsStreamsCleanlyAndJobsResumeAfterRestart(t *testing.T) {
	interruptAndResume(t, func(p *stack.Proc) {
		if err := p.Terminate(); err != nil {
			t.Errorf("backend exited with %v after SIGTERM, want 0", err)
		}
	})
}
