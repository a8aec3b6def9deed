package e2e_test

import (
	"context"
	"net/http"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/exportstream/exportstream/e2e/stack"
	"github.com/exportstream/exportstream/internal/redistest"
)

// More workers than go-redis's default pool (10 connections per CPU) once
// made every request wait behind the idle workers' blocking reads of the
// work queue: 1–2 s per create with 40 workers on 2 CPUs.
//
// The starving condition is read from Redis itself: before each create,
// the server must report every worker blocked in its XREADGROUP, each
// holding one of the backend's pooled connections. That is more
// connections than the default pool has, so a request made then is one
// that used to wait; it must not.
func TestManyWorkersOnRedisDoNotStarveRequests(t *testing.T) {
	const workers = 100
	if defaultPool := 10 * runtime.GOMAXPROCS(0); workers <= defaultPool {
		t.Fatalf("%d workers do not outnumber go-redis's default pool of %d connections here: raise workers", workers, defaultPool)
	}
	rs := redistest.Start(t)
	u := stack.Backend(t, "-data-dir", t.TempDir(), "-redis-url", rs.URL(), "-workers", strconv.Itoa(workers)).URL
	rdb := redis.NewClient(&redis.Options{Addr: rs.Addr()})
	defer func() { _ = rdb.Close() }()

	var slowest time.Duration
	for i := range 5 {
		waitBlockedClients(t, rdb, workers)
		began := time.Now()
		resp, err := http.Post(u+"/v1/exports", "application/json", strings.NewReader(`{"rows":1,"durationMs":0}`))
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("create %d: %d (no Redis connection free for the request?)", i+1, resp.StatusCode)
		}
		slowest = max(slowest, time.Since(began))
	}
	if slowest > 500*time.Millisecond {
		t.Errorf("slowest of 5 creates, each made while %d workers held a Redis connection in a blocking read, took %v; want well under a second", workers, slowest)
	}
}

var blockedClients = regexp.MustCompile(`(?m)^blocked_clients:(\d+)\r?$`)

// waitBlockedClients polls Redis's INFO until at least n clients are
// blocked (in the backend's workers' XREADGROUP: nothing else here issues
// a blocking command), for up to 10 s.
func waitBlockedClients(t *testing.T, rdb *redis.Client, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	most := 0
	for {
		info, err := rdb.Info(context.Background(), "clients").Result()
		if err != nil {
			t.Fatal(err)
		}
		m := blockedClients.FindStringSubmatch(info)
		if m == nil {
			t.Fatalf("no blocked_clients in INFO clients:\n%s", info)
		}
		blocked, _ := strconv.Atoi(m[1])
		if blocked >= n {
			return
		}
		most = max(most, blocked)
		if time.Now().After(deadline) {
			t.Fatalf("Redis saw at most %d clients blocked in XREADGROUP in 10 s, want all %d workers: the backend's pool has fewer connections than workers", most, n)
		}
		<-tick.C
	}
}
