package e2e_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/exportstream/exportstream/e2e/stack"
	"github.com/exportstream/exportstream/internal/testenv"
)

// The data directory on a disk of its own: a tmpfs of a few MiB that the
// test fills for real. Mounting needs root (or CAP_SYS_ADMIN); elsewhere
// the test skips loudly, and fails under CI=true.

const diskSize = 4 << 20

// smallDisk mounts a tmpfs of diskSize bytes on a new directory and
// unmounts it when the test ends (after the backend is killed).
func smallDisk(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d,mode=0700", diskSize), "tmpfs", dir).CombinedOutput()
	if err != nil {
		testenv.Missing(t, "a tmpfs mount for the disk-full test (needs root or CAP_SYS_ADMIN): %v %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", dir, err, out)
			_ = exec.Command("umount", "-l", dir).Run()
		}
	})
	return dir
}

// fill writes to dir/filler-<n> until the disk says ENOSPC; bounded by
// the size of the disk.
func fill(t *testing.T, dir string, n int) string {
	t.Helper()
	path := filepath.Join(dir, fmt.Sprintf("filler-%d", n))
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	chunk := make([]byte, 4096)
	for range diskSize/len(chunk) + 1 {
		if _, err = f.Write(chunk); err != nil {
			break
		}
	}
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("filling %s: %v, want ENOSPC", dir, err)
	}
	return path
}

type apiErrorBody struct {
	Error struct{ Code, Message string }
}

// post creates an export and returns the status, the body and Retry-After.
func post(t *testing.T, c *http.Client, url, body string) (int, []byte, string) {
	t.Helper()
	resp, err := c.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b, resp.Header.Get("Retry-After")
}

// verifyDownload fetches j's file from the backend at url by its code and
// checks it against the file recomputed from the code.
func verifyDownload(t *testing.T, url string, j stack.Job) {
	t.Helper()
	want := stack.ExpectedSHA256(j.Code, j.RowsTotal)
	if got, err := stack.Download(t.Context(), http.DefaultClient, url+"/v1/exports/"+j.Code+"/file"); err != nil || got != want {
		t.Errorf("download of %s: %v, sha256 %s, want %s", j.Code, err, got, want)
	}
}

// TestAFullDiskRefusesCreatesWith507FailsRunningJobsClearlyAndCorruptsNothing
// fills the data directory's disk while an export runs: the export ends
// FAILED with STORAGE_FULL (never stuck IN_PROGRESS), creates get 507
// INSUFFICIENT_STORAGE with a JSON error from the backend and through the
// real BFF, a finished file still downloads; when space returns creates
// work again, and after a restart the database checks clean and every job
// is terminal with its last state.
func TestAFullDiskRefusesCreatesWith507FailsRunningJobsClearlyAndCorruptsNothing(t *testing.T) {
	dir := smallDisk(t)
	const reserve = 512 << 10
	p := startBackend(t, dir, "-disk-reserve", fmt.Sprint(reserve))
	bff := stack.BFF(t, p.URL).URL
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	if st, err := os.Stat(filepath.Join(dir, "disk-reserve")); err != nil || st.Size() != reserve {
		t.Fatalf("disk reserve: %v %v, want %d bytes", st, err, reserve)
	}

	done := stack.Create(t, p.URL, `{"rows":2000,"durationMs":0}`)
	done = stack.Last(stack.Watch(t, p.URL, done.Code, 0))
	if done.Status != stack.StatusCompleted {
		t.Fatalf("first export: %s", done.Status)
	}

	running := stack.Create(t, p.URL, `{"rows":20000,"durationMs":8000}`)
	events := stack.Watch(t, p.URL, running.Code, 0)
	for j := range events {
		if j.Status == stack.StatusInProgress && j.Progress > 0 {
			break
		}
	}
	fillers := []string{fill(t, dir, 1)}
	end := stack.Last(events)
	if end.Status != stack.StatusFailed || end.Error == nil || end.Error.Code != "STORAGE_FULL" {
		t.Fatalf("the export running when the disk filled ended %s %+v, want FAILED with STORAGE_FULL", end.Status, end.Error)
	}
	t.Logf("running export failed at %d%%: %s", end.Progress, end.Error.Message)
	// Its partial file was deleted, which gave room back: take it too.
	fillers = append(fillers, fill(t, dir, 2))

	for _, target := range []struct{ name, url string }{{"backend", p.URL + "/v1/exports"}, {"bff", bff + "/api/exports"}} {
		status, body, retry := post(t, browser, target.url, `{"rows":10,"durationMs":0}`)
		var e apiErrorBody
		if err := json.Unmarshal(body, &e); err != nil || status != http.StatusInsufficientStorage || e.Error.Code != "INSUFFICIENT_STORAGE" || retry == "" {
			t.Errorf("%s: create on a full disk: %d %s (Retry-After %q), want 507 INSUFFICIENT_STORAGE with Retry-After", target.name, status, body, retry)
		}
		if strings.Contains(string(body), dir) || strings.Contains(string(body), "no space") {
			t.Errorf("%s: the error leaks internals: %s", target.name, body)
		}
	}
	verifyDownload(t, p.URL, done) // reads go on

	for _, f := range fillers {
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
	}
	after := stack.Create(t, p.URL, `{"rows":2000,"durationMs":0}`)
	after = stack.Last(stack.Watch(t, p.URL, after.Code, 0))
	if after.Status != stack.StatusCompleted {
		t.Fatalf("export after space returned: %s %+v", after.Status, after.Error)
	}
	verifyDownload(t, p.URL, after)
	if st, err := os.Stat(filepath.Join(dir, "disk-reserve")); err != nil || st.Size() != reserve {
		t.Errorf("disk reserve after space returned: %v %v, want %d bytes", st, err, reserve)
	}

	if err := p.Terminate(); err != nil {
		t.Fatalf("backend exit after SIGTERM: %v", err)
	}
	checkDatabase(t, filepath.Join(dir, "exportstream.db"))
	p = startBackend(t, dir, "-disk-reserve", fmt.Sprint(reserve))
	for _, want := range []stack.Job{done, end, after} {
		resp, err := http.Get(p.URL + "/v1/exports/" + want.Code)
		if err != nil {
			t.Fatal(err)
		}
		var got stack.Job
		_ = json.NewDecoder(resp.Body).Decode(&got)
		_ = resp.Body.Close()
		if got.Status != want.Status || got.Seq != want.Seq {
			t.Errorf("after restart %s is %s seq %d, want %s seq %d", want.Code, got.Status, got.Seq, want.Status, want.Seq)
		}
	}
	verifyDownload(t, p.URL, done)
	verifyDownload(t, p.URL, after)
}

// checkDatabase runs bbolt's consistency check on the closed database.
func checkDatabase(t *testing.T, path string) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	defer func() { _ = db.Close() }()
	err = db.View(func(tx *bolt.Tx) error {
		var errs []error
		for err := range tx.Check() {
			errs = append(errs, err)
		}
		return errors.Join(errs...)
	})
	if err != nil {
		t.Errorf("database check after the disk filled: %v", err)
	}
}

func mount(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("mount", args...).CombinedOutput(); err != nil {
		t.Fatalf("mount %v: %v %s", args, err, out)
	}
}

// TestAFilesDirectoryTurnedReadOnlyFailsRunningJobsAndCreatesGet503 makes
// the files directory read-only while an export runs (a read-only bind
// mount over it, as a failing disk remounted read-only would be): the
// export ends FAILED with STORAGE_READ_ONLY, creates get 503
// STORAGE_READ_ONLY from the backend and through the BFF; writable again,
// creates work.
func TestAFilesDirectoryTurnedReadOnlyFailsRunningJobsAndCreatesGet503(t *testing.T) {
	dir := smallDisk(t)
	files := filepath.Join(dir, "files")
	p := startBackend(t, dir, "-disk-reserve", "0")
	bff := stack.BFF(t, p.URL).URL
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, Timeout: 10 * time.Second}

	running := stack.Create(t, p.URL, `{"rows":2000,"durationMs":1500}`)
	events := stack.Watch(t, p.URL, running.Code, 0)
	for j := range events {
		if j.Status == stack.StatusInProgress && j.Progress > 0 {
			break
		}
	}
	mount(t, "--bind", files, files)
	unmounted := false
	unmount := func() {
		if !unmounted {
			unmounted = true
			if out, err := exec.Command("umount", files).CombinedOutput(); err != nil {
				t.Errorf("umount %s: %v %s", files, err, out)
			}
		}
	}
	t.Cleanup(unmount)
	mount(t, "-o", "remount,bind,ro", files)

	end := stack.Last(events)
	if end.Status != stack.StatusFailed || end.Error == nil || end.Error.Code != "STORAGE_READ_ONLY" {
		t.Fatalf("the export running when the files turned read-only ended %s %+v, want FAILED with STORAGE_READ_ONLY", end.Status, end.Error)
	}
	for _, target := range []struct{ name, url string }{{"backend", p.URL + "/v1/exports"}, {"bff", bff + "/api/exports"}} {
		status, body, retry := post(t, browser, target.url, `{"rows":10,"durationMs":0}`)
		var e apiErrorBody
		if err := json.Unmarshal(body, &e); err != nil || status != http.StatusServiceUnavailable || e.Error.Code != "STORAGE_READ_ONLY" || retry == "" {
			t.Errorf("%s: create on a read-only disk: %d %s (Retry-After %q), want 503 STORAGE_READ_ONLY", target.name, status, body, retry)
		}
	}

	unmount()
	after := stack.Last(stack.Watch(t, p.URL, stack.Create(t, p.URL, `{"rows":500,"durationMs":0}`).Code, 0))
	if after.Status != stack.StatusCompleted {
		t.Fatalf("export once writable again: %s %+v", after.Status, after.Error)
	}
	verifyDownload(t, p.URL, after)
}

// TestABackendOnAReadOnlyDataDirectoryRefusesToStartWithAClearError: a
// backend that could record no change does not pretend to be ready; it
// exits 1 saying why, and on the same directory made writable again it
// starts with every finished export intact.
func TestABackendOnAReadOnlyDataDirectoryRefusesToStartWithAClearError(t *testing.T) {
	dir := smallDisk(t)
	p := startBackend(t, dir, "-disk-reserve", "0")
	done := stack.Last(stack.Watch(t, p.URL, stack.Create(t, p.URL, `{"rows":500,"durationMs":0}`).Code, 0))
	if err := p.Terminate(); err != nil {
		t.Fatal(err)
	}

	mount(t, "-o", "remount,ro", dir)
	cmd := exec.Command(stack.Bin(t, "backend"), "-addr", "127.0.0.1:0", "-data-dir", dir)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(stderr.String(), "read-only") {
		t.Fatalf("backend on a read-only data directory: %v, stderr %q; want exit 1 naming the read-only storage", err, stderr.String())
	}
	t.Logf("refused to start: %s", strings.TrimSpace(stderr.String()))

	mount(t, "-o", "remount,rw", dir)
	p = startBackend(t, dir, "-disk-reserve", "0")
	verifyDownload(t, p.URL, done)
}
