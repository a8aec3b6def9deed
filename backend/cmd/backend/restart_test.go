package main_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	sse "github.com/tmaxmax/go-sse"

	"github.com/exportstream/exportstream/backend/internal/job"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "backend-bin-")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "backend")
	build := exec.Command("go", "build", "-o", binary, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build backend:", err)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

type proc struct {
	cmd *exec.Cmd
	url string
}

// start runs the real binary on dataDir (with extra flags) and returns
// once it listens.
func start(t *testing.T, dataDir string, extra ...string) *proc {
	t.Helper()
	cmd, url := startProcess(t, binary, append([]string{"-addr", "127.0.0.1:0", "-data-dir", dataDir, "-workers", "8"}, extra...)...)
	return &proc{cmd: cmd, url: url}
}

// watch streams code's events (after lastID) into a channel; it closes
// when the stream ends for any reason.
func watch(t *testing.T, url, code string, lastID int64) <-chan job.Job {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/v1/exports/"+code+"/events", nil)
	if lastID > 0 {
		req.Header.Set("Last-Event-ID", strconv.FormatInt(lastID, 10))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		cancel()
		t.Fatalf("events of %s: %v %v", code, resp, err)
	}
	ch := make(chan job.Job, 1024)
	go func() {
		defer cancel()
		defer close(ch)
		defer func() { _ = resp.Body.Close() }()
		for ev, err := range sse.Read(resp.Body, nil) {
			if err != nil {
				return
			}
			var j job.Job
			if json.Unmarshal([]byte(ev.Data), &j) == nil && strconv.FormatInt(j.Seq, 10) == ev.LastEventID {
				ch <- j
			}
		}
	}()
	return ch
}

func create(t *testing.T, url, body string) job.Job {
	t.Helper()
	resp, err := http.Post(url+"/v1/exports", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	var j job.Job
	if err := json.NewDecoder(resp.Body).Decode(&j); err != nil || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("create: %d %v", resp.StatusCode, err)
	}
	return j
}

func expectedSHA256(code string, rows int) string {
	h := sha256.New()
	_, _ = io.WriteString(h, job.CSVHeader)
	_ = job.WriteRows(h, code, 0, rows)
	return hex.EncodeToString(h.Sum(nil))
}

// interruptAndResume creates jobs, stops the backend mid-generation with
// stop, restarts it on the same data directory and checks that every
// client, resuming with its Last-Event-ID, reaches COMPLETED with no
// duplicate and a file that verifies.
func interruptAndResume(t *testing.T, stop func(*proc)) {
	dir := t.TempDir()
	p := start(t, dir)
	const rows = 3000
	var jobs []job.Job
	var streams []<-chan job.Job
	for range 6 {
		j := create(t, p.url, fmt.Sprintf(`{"rows":%d,"durationMs":4000}`, rows))
		jobs = append(jobs, j)
		streams = append(streams, watch(t, p.url, j.Code, 0))
	}
	lastSeen := make([]int64, len(jobs))
	for i, s := range streams {
		for j := range s { // mid-generation: some progress, not the end
			lastSeen[i] = j.Seq
			if j.Status == job.StatusInProgress && j.Progress > 0 {
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

	p = start(t, dir)
	for i, j := range jobs {
		prev, terminal := lastSeen[i], 0
		var end job.Job
		for ev := range watch(t, p.url, j.Code, lastSeen[i]) {
			if ev.Seq <= prev {
				t.Errorf("job %d: seq %d after %d across the restart (duplicate or going back)", i, ev.Seq, prev)
			}
			if ev.Status.Terminal() {
				terminal++
			}
			prev, end = ev.Seq, ev
		}
		if terminal != 1 || end.Status != job.StatusCompleted {
			t.Fatalf("job %d: %d terminal events, last %s (%+v); want exactly one COMPLETED", i, terminal, end.Status, end.Error)
		}
		resp, err := http.Get(p.url + end.File.URL)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		sum := sha256.Sum256(body)
		if got, want := hex.EncodeToString(sum[:]), expectedSHA256(j.Code, rows); got != want || end.File.SHA256 != want {
			t.Errorf("job %d: downloaded sha256 %s, announced %s, want %s", i, got, end.File.SHA256, want)
		}
	}
}

func TestAfterKill9EveryJobResumesAndCompletesWithoutDuplicates(t *testing.T) {
	interruptAndResume(t, func(p *proc) {
		_ = p.cmd.Process.Kill()
		_ = p.cmd.Wait()
	})
}

func TestSIGTERMEndsStreamsCleanlyAndJobsResumeAfterRestart(t *testing.T) {
	interruptAndResume(t, func(p *proc) {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		if err := p.cmd.Wait(); err != nil {
			t.Errorf("backend exited with %v after SIGTERM, want 0", err)
		}
	})
}
