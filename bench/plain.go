package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"
)

// plainServer is the floor of the delivery scenarios: a plain net/http SSE
// server, in a process of its own like the servers under test, that
// streams what a job's stream carries (a snapshot with code, seq, status
// and updatedAt, with its id) at the same rate, from memory, with no
// store, no relay and no session. Its streams wait for POST /release,
// then each starts at a random point of one interval, as independent
// exports do, and ends with a COMPLETED snapshot.
//
//	bench plain-server -addr 127.0.0.1:port -events 100 -interval 100ms
func plainServer(args []string) error {
	fs := flag.NewFlagSet("plain-server", flag.ContinueOnError)
	addr := fs.String("addr", "", "127.0.0.1:port")
	events := fs.Int("events", 100, "snapshots per stream, the last one COMPLETED")
	interval := fs.Duration("interval", 100*time.Millisecond, "between two snapshots of a stream")
	if err := fs.Parse(args); err != nil {
		return err
	}
	released := make(chan struct{})
	var once sync.Once
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	mux.HandleFunc("POST /release", func(w http.ResponseWriter, _ *http.Request) {
		once.Do(func() { close(released) })
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /v1/exports/{code}/events", func(w http.ResponseWriter, r *http.Request) {
		plainStream(w, r, released, *events, *interval)
	})
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	return (&http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}).Serve(ln)
}

func plainStream(w http.ResponseWriter, r *http.Request, released <-chan struct{}, events int, interval time.Duration) {
	f, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "no flusher", http.StatusInternalServerError)
		return
	}
	code := r.PathValue("code")
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	f.Flush()
	select {
	case <-released:
	case <-r.Context().Done():
		return
	}
	select {
	case <-time.After(rand.N(interval)):
	case <-r.Context().Done():
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	buf := make([]byte, 0, 512)
	for seq := 1; seq <= events; seq++ {
		status, progress := "IN_PROGRESS", seq*100/events
		if seq == events {
			status = "COMPLETED"
		}
		buf = append(buf[:0], "id: "...)
		buf = strconv.AppendInt(buf, int64(seq), 10)
		buf = fmt.Appendf(buf, "\ndata: {\"code\":%q,\"status\":%q,\"progress\":%d,\"seq\":%d,\"updatedAt\":%q}\n\n",
			code, status, progress, seq, time.Now().UTC().Format(time.RFC3339Nano))
		if _, err := w.Write(buf); err != nil {
			return
		}
		f.Flush()
		if seq == events {
			return
		}
		select {
		case <-t.C:
		case <-r.Context().Done():
			return
		}
	}
}

// plain starts the floor server: events snapshots per stream, interval apart.
func (e *env) plain(ctx context.Context, name string, events int, interval time.Duration) (*server, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	self, err = filepath.Abs(self)
	if err != nil {
		return nil, err
	}
	return start(ctx, name, e.logDir, nil, self, "plain-server", "-addr", "{addr}",
		"-events", strconv.Itoa(events), "-interval", interval.String())
}

// releasePlain starts the floor server's streams.
func releasePlain(ctx context.Context, c *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/release", nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		return errors.New("release: " + resp.Status)
	}
	return nil
}
