package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// A subscriber whose stream ends before the terminal event reconnects with
// the last id it got and stops at the terminal event of the next stream.
func TestASubscriberResumesFromTheLastEventAndStopsAtTheTerminalOne(t *testing.T) {
	var conns atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		switch conns.Add(1) {
		case 1:
			if id := r.Header.Get("Last-Event-ID"); id != "" {
				t.Errorf("first connection: Last-Event-ID %q, want none", id)
			}
			_, _ = fmt.Fprint(w, "id: 1\ndata: {\"seq\":1,\"status\":\"RUNNING\"}\n\n")
		default:
			if id := r.Header.Get("Last-Event-ID"); id != "1" {
				t.Errorf("reconnection: Last-Event-ID %q, want 1", id)
			}
			_, _ = fmt.Fprint(w, "id: 2\ndata: {\"seq\":2,\"status\":\"COMPLETED\"}\n\n")
			_, _ = fmt.Fprint(w, "id: 3\ndata: {\"seq\":3,\"status\":\"COMPLETED\"}\n\n")
		}
	}))
	defer srv.Close()
	connected := 0
	res := subscribe(context.Background(), newHTTPClient(nil), target{kind: kindBackend, url: srv.URL}, job{code: "c"},
		watchOpts{connected: func() { connected++ }, maxConns: 5, deadline: 10 * time.Second})
	if res.err != nil || !res.terminal {
		t.Fatalf("err %v, terminal %v: want the terminal event without error", res.err, res.terminal)
	}
	if len(res.events) != 2 || res.events[0].seq != 1 || res.events[1].seq != 2 {
		t.Errorf("events %+v, want seq 1 then 2 (nothing after the terminal one)", res.events)
	}
	if res.reconnects != 1 || connected != 1 {
		t.Errorf("reconnects %d, connected called %d times: want 1 and 1", res.reconnects, connected)
	}
}

// A 204 ends the watch at once: the job has nothing more to send.
func TestASubscriberStopsAtNoContent(t *testing.T) {
	var conns atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		conns.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	res := subscribe(context.Background(), newHTTPClient(nil), target{kind: kindBackend, url: srv.URL}, job{code: "c"},
		watchOpts{maxConns: 5, deadline: 10 * time.Second})
	if !res.terminal || res.err == nil || res.err.Error() != "GET events: 204" || conns.Load() != 1 {
		t.Errorf("terminal %v, err %v, %d connections: want terminal, the 204 as error, one connection", res.terminal, res.err, conns.Load())
	}
}

// A stream that never brings the terminal event is retried up to maxConns
// connections and then reported.
func TestASubscriberGivesUpAfterMaxConnections(t *testing.T) {
	var conns atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		conns.Add(1)
		w.Header().Set("Content-Type", "text/event-stream")
	}))
	defer srv.Close()
	res := subscribe(context.Background(), newHTTPClient(nil), target{kind: kindBackend, url: srv.URL}, job{code: "c"},
		watchOpts{maxConns: 2, deadline: 10 * time.Second})
	if res.terminal || res.err == nil || res.err.Error() != "stream ended without a terminal event" || conns.Load() != 2 || res.reconnects != 1 {
		t.Errorf("terminal %v, err %v, %d connections, %d reconnects: want the missing terminal event reported after 2 connections",
			res.terminal, res.err, conns.Load(), res.reconnects)
	}
}
