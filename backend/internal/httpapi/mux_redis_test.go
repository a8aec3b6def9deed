package httpapi_test

import (
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/exportstream/exportstream/backend/internal/eventmux"
	"github.com/exportstream/exportstream/backend/internal/httpapi"
	"github.com/exportstream/exportstream/backend/internal/job"
	"github.com/exportstream/exportstream/backend/internal/store"
	"github.com/exportstream/exportstream/backend/internal/worker"
	"github.com/exportstream/exportstream/internal/envelope"
	"github.com/exportstream/exportstream/internal/redistest"
	"github.com/exportstream/exportstream/internal/testenv"
)

var redisPrefixes atomic.Int64

// redisReplicas starts n backends scaled out on one redis-server, as
// cmd/backend wires them: each its own Redis store (one prefix for all)
// and multiplexed streams whose calls travel on Redis. mux adjusts the
// hubs' configuration.
func redisReplicas(t *testing.T, n int, mux eventmux.Config) (*redistest.Server, []*testBackend) {
	t.Helper()
	srv := redistest.Start(t)
	prefix := fmt.Sprintf("muxtest%d:", redisPrefixes.Add(1))
	var replicas []*testBackend
	for range n {
		st, err := store.OpenRedis(t.Context(), srv.URL(), store.RedisOptions{Prefix: prefix})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = st.Close() }) // after the backend's own cleanup
		replicas = append(replicas, newBackend(t, func(h *httpapi.Config, _ *worker.Config) {
			cfg := mux
			cfg.Store, cfg.Logger, cfg.Redis, cfg.Prefix = st, h.Logger, st.Client(), st.Prefix()
			h.Store, h.Mux = st, eventmux.New(cfg)
		}))
	}
	return srv, replicas
}

func TestOnRedisSubscriptionCallsToAnyReplicaReachTheStreamWhereItIs(t *testing.T) {
	_, r := redisReplicas(t, 2, eventmux.Config{})
	a, b := r[0], r[1]
	m := openMux(t, a.url, muxOptions{})
	gone, kept := storedJob(t, b.store, "alice"), storedJob(t, b.store, "alice")

	subscribe(t, b.url, m.id, gone.Code, "alice", 0)
	subscribe(t, b.url, m.id, kept.Code, "alice", 0)
	seen := map[string]int64{}
	m.until(t, func(e envelope.Envelope) bool { seen[e.Code] = envID(t, e); return len(seen) == 2 })
	if seen[gone.Code] != 1 || seen[kept.Code] != 1 {
		t.Fatalf("first snapshots %v, want seq 1 of each", seen)
	}
	// Changed through B's store, seen on A's stream.
	moved := progress(t, b.store, gone.Code, 10)
	m.until(t, func(e envelope.Envelope) bool { return e.Code == gone.Code && envID(t, e) == moved.Seq })

	// A DELETE through B, right after the PUT it follows, applies after it.
	unsubscribe(t, b.url, m.id, gone.Code, "alice")
	var envs []envelope.Envelope
	for p := 1; p <= 3; p++ {
		progress(t, b.store, gone.Code, 10+p)
		want := progress(t, b.store, kept.Code, p).Seq
		envs = append(envs, m.until(t, func(e envelope.Envelope) bool { return e.Code == kept.Code && envID(t, e) == want })...)
	}
	cancelJob(t, b.store, kept.Code)
	envs = append(envs, m.until(t, endOf(kept.Code))...)
	for _, e := range envs {
		if e.Code == gone.Code {
			t.Errorf("after its DELETE through B: %s", show(e))
		}
	}
	// Another owner's code through B, and a call through A itself.
	subscribe(t, b.url, m.id, gone.Code, "mallory", 0)
	if e := m.next(t); e.Code != gone.Code || e.End != envelope.EndNotFound || e.Data != nil {
		t.Errorf("another owner through B: %s, want not_found", show(e))
	}
	subscribe(t, a.url, m.id, gone.Code, "alice", moved.Seq)
	if e := m.next(t); e.Code != gone.Code || envID(t, e) != moved.Seq+3 {
		t.Errorf("through A from %d: %s, want seq %d", moved.Seq, show(e), moved.Seq+3)
	}

	// No replica holds these: 404 from either.
	for _, stream := range []string{job.New(job.Request{Rows: 1}, "", time.Now()).Code, "nope"} {
		for _, base := range []string{a.url, b.url} {
			var e struct{ Error struct{ Code string } }
			if r := call(t, "PUT", base+"/v1/events/"+stream+"/subscriptions/"+kept.Code, "", owner("alice"), &e); r.StatusCode != http.StatusNotFound || e.Error.Code != "STREAM_NOT_FOUND" {
				t.Errorf("PUT on unopened stream %s: %d %s, want 404 STREAM_NOT_FOUND", stream, r.StatusCode, e.Error.Code)
			}
		}
	}
	m.close()
	eventually(t, "the stream closed on A", func() bool { return a.api.Mux.Streams() == 0 })
	var e struct{ Error struct{ Code string } }
	if r := call(t, "DELETE", b.url+"/v1/events/"+m.id+"/subscriptions/"+kept.Code, "", owner("alice"), &e); r.StatusCode != http.StatusNotFound || e.Error.Code != "STREAM_NOT_FOUND" {
		t.Errorf("DELETE through B on the closed stream: %d %s, want 404", r.StatusCode, e.Error.Code)
	}
	eventually(t, "no eventmux goroutine left", func() bool { return muxGoroutines() == 0 })
}

func TestOnRedisTheStreamsReplicaAnswersItsBound(t *testing.T) {
	_, r := redisReplicas(t, 2, eventmux.Config{MaxSubscriptions: 1})
	a, b := r[0], r[1]
	m := openMux(t, a.url, muxOptions{})
	one, two := storedJob(t, b.store, "o"), storedJob(t, b.store, "o")
	subscribe(t, b.url, m.id, one.Code, "o", 0)
	var e struct{ Error struct{ Code string } }
	if r := call(t, "PUT", b.url+"/v1/events/"+m.id+"/subscriptions/"+two.Code, "", owner("o"), &e); r.StatusCode != http.StatusTooManyRequests || e.Error.Code != "TOO_MANY_SUBSCRIPTIONS" {
		t.Errorf("a second subscription through B: %d %s, want 429 TOO_MANY_SUBSCRIPTIONS", r.StatusCode, e.Error.Code)
	}
	subscribe(t, b.url, m.id, one.Code, "o", 1) // a replacement fits
	unsubscribe(t, b.url, m.id, one.Code, "o")
	subscribe(t, b.url, m.id, two.Code, "o", 0)
}

func TestOnRedisAStreamWhoseChannelFailsEndsAndCallsGet503(t *testing.T) {
	testenv.Slow(t)
	srv, r := redisReplicas(t, 2, eventmux.Config{})
	a, b := r[0], r[1]
	m := openMux(t, a.url, muxOptions{})
	j := storedJob(t, b.store, "o")
	subscribe(t, b.url, m.id, j.Code, "o", 0)
	m.next(t)
	srv.Stop()
	select {
	case <-m.ended:
	case <-time.After(10 * time.Second):
		t.Fatal("the stream is still open 10 s after Redis went away")
	}
	for _, c := range []struct{ method, path string }{
		{"PUT", "/v1/events/" + m.id + "/subscriptions/" + j.Code},
		{"DELETE", "/v1/events/" + m.id + "/subscriptions/" + j.Code},
		{"GET", "/v1/events"},
	} {
		var e struct{ Error struct{ Code string } }
		if r := call(t, c.method, b.url+c.path, "", owner("o"), &e); r.StatusCode != http.StatusServiceUnavailable || e.Error.Code != "STORE_UNAVAILABLE" || r.Header.Get("Retry-After") == "" {
			t.Errorf("%s %s with Redis away: %d %s; want 503 STORE_UNAVAILABLE with Retry-After", c.method, c.path, r.StatusCode, e.Error.Code)
		}
	}
	eventually(t, "no eventmux goroutine left", func() bool { return muxGoroutines() == 0 })
}
