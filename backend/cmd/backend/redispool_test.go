package main_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/exportstream/exportstream/backend/internal/redistest"
)

// More workers than go-redis's default pool (10 connections per CPU) once
// made every request wait behind the idle workers' blocking reads of the
// work queue: 1–2 s per create with 40 workers on 2 CPUs.
func TestManyWorkersOnRedisDoNotStarveRequests(t *testing.T) {
	rs := redistest.Start(t)
	_, u := startProcess(t, binary, "-addr", "127.0.0.1:0", "-data-dir", t.TempDir(),
		"-redis-url", rs.URL(), "-workers", "100")
	time.Sleep(300 * time.Millisecond) // every worker is in its blocking read
	var slowest time.Duration
	for range 5 {
		began := time.Now()
		resp, err := http.Post(u+"/v1/exports", "application/json", strings.NewReader(`{"rows":1,"durationMs":0}`))
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("create: %d (no Redis connection free for the request?)", resp.StatusCode)
		}
		slowest = max(slowest, time.Since(began))
	}
	if slowest > 500*time.Millisecond {
		t.Errorf("slowest of 5 creates with 100 idle workers took %v, want well under a second", slowest)
	}
}
