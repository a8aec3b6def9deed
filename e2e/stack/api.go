package stack

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	sse "github.com/tmaxmax/go-sse"

	"github.com/exportstream/exportstream/internal/exportfile"
)

// Status is an export's state on the wire (docs/openapi.yaml): the ones
// the tests look for are named; the BFF's streams add ERROR.
type Status string

// The states the tests name.
const (
	StatusInProgress Status = "IN_PROGRESS"
	StatusCompleted  Status = "COMPLETED"
	StatusFailed     Status = "FAILED"
	StatusError      Status = "ERROR"
)

// Terminal reports whether s is a job's final state: COMPLETED, FAILED or
// CANCELLED.
func (s Status) Terminal() bool {
	switch s {
	case StatusCompleted, StatusFailed, "CANCELLED":
		return true
	}
	return false
}

// Job is an export as the API sends it: a snapshot and every event's data.
type Job struct {
	Code      string `json:"code"`
	Status    Status `json:"status"`
	Progress  int    `json:"progress"`
	RowsDone  int    `json:"rowsDone"`
	RowsTotal int    `json:"rowsTotal"`
	Seq       int64  `json:"seq"`
	File      *File  `json:"file,omitempty"`
	Error     *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error,omitempty"`
}

// File is a finished export's file.
type File struct {
	Name      string    `json:"name"`
	Size      int64     `json:"size"`
	SHA256    string    `json:"sha256"`
	URL       string    `json:"url"`
	ExpiresAt time.Time `json:"expiresAt"`
}

// ExpectedSHA256 is the SHA-256 of code's file of rows rows, recomputed.
func ExpectedSHA256(code string, rows int) string { return exportfile.SHA256(code, rows) }

// Create starts an export on the backend at url with body and returns its
// first snapshot; anything but 202 fails tb.
func Create(tb testing.TB, url, body string) Job {
	tb.Helper()
	req, _ := http.NewRequestWithContext(tb.Context(), http.MethodPost, url+"/v1/exports", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	var j Job
	if err := json.NewDecoder(resp.Body).Decode(&j); err != nil || resp.StatusCode != http.StatusAccepted {
		tb.Fatalf("create: %d %v", resp.StatusCode, err)
	}
	return j
}

// Watch streams code's events from the backend at url (after lastID, when
// above 0) into a channel, for up to a minute; it closes when the stream
// ends for any reason. Only events whose id is their seq pass.
func Watch(tb testing.TB, url, code string, lastID int64) <-chan Job {
	tb.Helper()
	ctx, cancel := context.WithTimeout(tb.Context(), time.Minute)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/v1/exports/"+code+"/events", nil)
	if lastID > 0 {
		req.Header.Set("Last-Event-ID", strconv.FormatInt(lastID, 10))
	}
	resp, err := http.DefaultClient.Do(req) //nolint:bodyclose // closed below, or by the goroutine reading it
	if err == nil && resp.StatusCode != http.StatusOK {
		_ = resp.Body.Close()
		err = fmt.Errorf("status %d", resp.StatusCode)
	}
	if err != nil {
		cancel()
		tb.Fatalf("events of %s: %v", code, err)
	}
	ch := make(chan Job, 1024)
	go func() {
		defer cancel()
		defer close(ch)
		defer func() { _ = resp.Body.Close() }()
		for ev, err := range sse.Read(resp.Body, nil) {
			if err != nil {
				return
			}
			var j Job
			if json.Unmarshal([]byte(ev.Data), &j) == nil && strconv.FormatInt(j.Seq, 10) == ev.LastEventID {
				ch <- j
			}
		}
	}()
	return ch
}

// Last drains events and returns the last one.
func Last(events <-chan Job) Job {
	var end Job
	for j := range events {
		end = j
	}
	return end
}

// Download GETs url with client and returns the body's SHA-256; anything
// but 200 is an error.
func Download(ctx context.Context, client *http.Client, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", fmt.Errorf("download: %w", err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", fmt.Errorf("download: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("download: %d", resp.StatusCode)
	}
	h := sha256.New()
	if _, err := io.Copy(h, resp.Body); err != nil {
		return "", fmt.Errorf("download: %w", err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
