package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	sse "github.com/tmaxmax/go-sse"
)

// sourceAddrs are the loopback addresses connections are made from, in
// turn, so the load can go past one address pair's ~28k ephemeral ports.
// Every one is in 127.0.0.0/8, as are all targets.
var (
	sourceAddrs []*net.TCPAddr
	nextSource  atomic.Uint64
)

func init() {
	for i := 2; i <= 201; i++ {
		sourceAddrs = append(sourceAddrs, &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(i))})
	}
}

// wire counts the bytes a client sent and received on its connections
// (headers included: what the network carries).
type wire struct{ sent, received atomic.Int64 }

type countingConn struct {
	net.Conn
	w *wire
}

func (c countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.w.received.Add(int64(n))
	return n, err
}

func (c countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.w.sent.Add(int64(n))
	return n, err
}

// dialLoopback dials a 127.0.0.0/8 address only, from the next source address.
func dialLoopback(ctx context.Context, network, addr string) (net.Conn, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() || ip.To4() == nil {
		return nil, fmt.Errorf("refusing to dial %s: the benchmark only targets 127.0.0.0/8", addr)
	}
	src := sourceAddrs[nextSource.Add(1)%uint64(len(sourceAddrs))]
	d := net.Dialer{LocalAddr: src, Timeout: 10 * time.Second}
	return d.DialContext(ctx, network, addr)
}

func newHTTPClient(w *wire) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := dialLoopback(ctx, network, addr)
			if err != nil || w == nil {
				return c, err
			}
			return countingConn{Conn: c, w: w}, nil
		},
		MaxIdleConns:          1000,
		MaxIdleConnsPerHost:   1000,
		IdleConnTimeout:       30 * time.Second,
		ResponseHeaderTimeout: 20 * time.Second,
		DisableCompression:    true,
	}}
}

// kind says how a target is addressed.
type kind int

const (
	kindBFF     kind = iota // /api, session cookie
	kindBackend             // /v1 directly, optional X-Export-Owner
	kindExpress             // the Node baseline: /api, jobs created on the backend
)

// target is one server the subscribers read from.
type target struct {
	name    string
	kind    kind
	url     string
	backend string // the backend's URL, where jobs are created for kindBackend/kindExpress
}

// job is a created export and the credentials to watch it.
type job struct {
	code   string
	cookie string // the BFF session cookie ("name=value"), if any
	owner  string // X-Export-Owner for the backend, if any
}

type createReq struct {
	Rows       int `json:"rows"`
	DurationMs int `json:"durationMs"`
}

// create starts an export on t (through the BFF, or on the backend for the
// others). cookie, if set, is reused: several jobs of one session.
func create(ctx context.Context, c *http.Client, t target, r createReq, cookie string) (job, error) {
	body, _ := json.Marshal(r)
	url := t.backend + "/v1/exports"
	if t.kind == kindBFF {
		url = t.url + "/api/exports"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return job{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	if cookie != "" {
		req.Header.Set("Cookie", cookie)
	}
	resp, err := c.Do(req)
	if err != nil {
		return job{}, err
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusAccepted {
		return job{}, fmt.Errorf("POST %s: %d %s", url, resp.StatusCode, b)
	}
	var v struct {
		Code string `json:"code"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return job{}, err
	}
	j := job{code: v.Code, cookie: cookie}
	for _, ck := range resp.Cookies() {
		if ck.Name == "exportstream_session" {
			j.cookie = ck.Name + "=" + ck.Value
		}
	}
	if j.cookie != "" {
		// The session id is the cookie value before its signature; it is
		// the owner at the backend (used to read the same job directly).
		v := strings.TrimPrefix(j.cookie, "exportstream_session=")
		if id, _, ok := strings.Cut(v, "."); ok {
			j.owner = id
		}
	}
	return j, nil
}

func eventsURL(t target, code string) string {
	if t.kind == kindBackend {
		return t.url + "/v1/exports/" + code + "/events"
	}
	return t.url + "/api/exports/" + code + "/events"
}

func snapshotURL(t target, code string) string {
	if t.kind == kindBackend {
		return t.url + "/v1/exports/" + code
	}
	return t.url + "/api/exports/" + code
}

// delivery is one event as a subscriber got it.
type delivery struct {
	seq       int64
	updatedAt int64 // unix ns, the backend's clock
	latencyUs int32 // receipt − updatedAt
	received  int64 // unix ns, the subscriber's clock (same machine)
	terminal  bool
}

// subResult is what one subscriber saw.
type subResult struct {
	events     []delivery
	reconnects int
	err        error
	terminal   bool
}

// watchOpts: how a subscriber reads.
type watchOpts struct {
	connected func()        // called once, when the first response is 200
	maxConns  int           // connections including reconnects
	deadline  time.Duration // the whole watch
}

// subscribe reads t's event stream of j until the terminal event, the
// deadline, or maxConns connections, resuming with Last-Event-ID.
func subscribe(ctx context.Context, c *http.Client, t target, j job, o watchOpts) subResult {
	ctx, cancel := context.WithTimeout(ctx, o.deadline)
	defer cancel()
	s := &subscription{c: c, t: t, j: j, o: o}
	return s.run(ctx)
}

// subscription is one subscriber's watch of one job: its connections in
// turn, the last event id it resumes from, and what it saw.
type subscription struct {
	c *http.Client
	t target
	j job
	o watchOpts

	res      subResult
	last     int64 // the highest seq received: Last-Event-ID of the next connection
	notified bool  // o.connected has been called
}

func (s *subscription) run(ctx context.Context) subResult {
	for attempt := 0; attempt < s.o.maxConns && ctx.Err() == nil; attempt++ {
		if attempt > 0 {
			s.res.reconnects++
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
		if s.connect(ctx) {
			return s.res
		}
	}
	if s.res.err == nil && !s.res.terminal {
		s.res.err = errors.New("stream ended without a terminal event")
	}
	return s.res
}

// connect makes one connection and reads it to its end; it reports whether
// the watch is over (terminal event, 204, or a request that cannot be
// made) rather than worth another connection.
func (s *subscription) connect(ctx context.Context) (over bool) {
	req, err := s.request(ctx)
	if err != nil {
		s.res.err = err
		return true
	}
	resp, err := s.c.Do(req)
	if err != nil {
		s.res.err = err
		return false
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, resp.Body)
		s.res.err = fmt.Errorf("GET events: %d", resp.StatusCode)
		// 204: the job is gone or over, nothing more will come.
		s.res.terminal = resp.StatusCode == http.StatusNoContent
		return s.res.terminal
	}
	if !s.notified && s.o.connected != nil {
		s.notified = true
		s.o.connected()
	}
	s.read(resp.Body)
	if s.res.terminal {
		s.res.err = nil
		return true
	}
	return false
}

func (s *subscription) request(ctx context.Context) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, eventsURL(s.t, s.j.code), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/event-stream")
	if s.j.cookie != "" && s.t.kind == kindBFF {
		req.Header.Set("Cookie", s.j.cookie)
	}
	if s.j.owner != "" && s.t.kind == kindBackend {
		req.Header.Set("X-Export-Owner", s.j.owner)
	}
	if s.last > 0 {
		req.Header.Set("Last-Event-ID", fmt.Sprint(s.last))
	}
	return req, nil
}

// read records the events of one stream until it ends, fails, or brings
// the terminal event.
func (s *subscription) read(body io.Reader) {
	for ev, err := range sse.Read(body, nil) {
		now := time.Now()
		if err != nil {
			s.res.err = err
			return
		}
		if ev.Data == "" {
			continue
		}
		d := parseDelivery(ev.Data, now)
		if d.seq == 0 {
			d.seq, _ = parseInt(ev.LastEventID)
		}
		s.last = max(s.last, d.seq)
		s.res.events = append(s.res.events, d)
		if d.terminal {
			s.res.terminal = true
			return
		}
	}
}

// parseDelivery reads seq, updatedAt and status out of a job JSON without
// a full decode: the load generator shares the machine with the servers.
func parseDelivery(data string, now time.Time) delivery {
	d := delivery{received: now.UnixNano()}
	if v := jsonField(data, `"updatedAt":"`, '"'); v != "" {
		if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
			d.updatedAt = t.UnixNano()
			lat := now.Sub(t).Microseconds()
			d.latencyUs = int32(min(max(lat, -1<<31), 1<<31-1))
		}
	}
	if v := jsonField(data, `"seq":`, ','); v != "" {
		d.seq, _ = parseInt(v)
	}
	switch jsonField(data, `"status":"`, '"') {
	case "COMPLETED", "FAILED", "CANCELLED", "ERROR":
		d.terminal = true
	}
	return d
}

func jsonField(s, key string, end byte) string {
	i := strings.Index(s, key)
	if i < 0 {
		return ""
	}
	s = s[i+len(key):]
	j := strings.IndexByte(s, end)
	if j < 0 {
		j = strings.IndexByte(s, '}')
		if j < 0 {
			return ""
		}
	}
	return s[:j]
}

func parseInt(s string) (int64, error) {
	var n int64
	if s == "" {
		return 0, errors.New("empty")
	}
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return 0, errors.New("not a number")
		}
		n = n*10 + int64(c-'0')
	}
	return n, nil
}

// poll GETs the snapshot every interval until it is terminal (the flow SSE
// replaces); it returns the terminal delivery, the number of requests and
// the error if any.
func poll(ctx context.Context, c *http.Client, t target, j job, interval, phase, deadline time.Duration) (delivery, int, error) {
	ctx, cancel := context.WithTimeout(ctx, deadline)
	defer cancel()
	select {
	case <-ctx.Done():
		return delivery{}, 0, ctx.Err()
	case <-time.After(phase):
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	requests := 0
	for ctx.Err() == nil {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, snapshotURL(t, j.code), nil)
		if err != nil {
			return delivery{}, requests, err
		}
		if j.cookie != "" {
			req.Header.Set("Cookie", j.cookie)
		}
		requests++
		resp, err := c.Do(req)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			now := time.Now()
			if resp.StatusCode == http.StatusOK {
				if d := parseDelivery(string(b), now); d.terminal {
					return d, requests, nil
				}
			}
		}
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
	}
	return delivery{}, requests, ctx.Err()
}
