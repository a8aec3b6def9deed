package campaign

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// opTimeout bounds every request but event streams.
const opTimeout = 10 * time.Second

// browser is one simulated browser: a cookie jar (its session, set by the
// first BFF that answers and valid on every BFF: they share the secret),
// the BFFs it reaches in turn (a refused connection goes on to the next, as
// a balancer skips a dead instance), and what it knows of its jobs.
type browser struct {
	id      int
	bffs    []string
	rr      atomic.Uint64
	client  *http.Client // requests
	streams *http.Client // event streams: no overall timeout
	rec     *Recorder
	log     *slog.Logger

	mu       sync.Mutex
	jobs     map[string]*known
	order    []string // accepted codes, in order
	subsJob  int      // open per-job subscribers
	subsAll  int      // open /api/events subscribers
	creating int      // creates under way
}

// known is what the browser last heard of one of its jobs.
type known struct {
	status  string
	rows    int
	file    *File
	deleted bool
}

func newBrowser(id int, bffs []string, rec *Recorder, log *slog.Logger) *browser {
	jar, _ := cookiejar.New(nil)
	tr := func(header time.Duration) *http.Transport {
		return &http.Transport{
			Proxy:                 nil,
			DialContext:           (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
			MaxIdleConnsPerHost:   8,
			IdleConnTimeout:       30 * time.Second,
			ResponseHeaderTimeout: header,
			DisableCompression:    true,
		}
	}
	return &browser{
		id: id, bffs: bffs, rec: rec, log: log, jobs: map[string]*known{},
		client:  &http.Client{Jar: jar, Transport: tr(opTimeout)},
		streams: &http.Client{Jar: jar, Transport: tr(8 * time.Second)}, // the BFF answers a stream within a heartbeat (2 s)
	}
}

func (b *browser) closeIdle() {
	b.client.CloseIdleConnections()
	b.streams.CloseIdleConnections()
}

// send makes one request to the next BFF in turn, going on to the next
// when a connection is refused (nothing was sent).
func (b *browser) send(ctx context.Context, c *http.Client, method, path string, body []byte, hdr http.Header) (*http.Response, error) {
	n := uint64(len(b.bffs))
	first := b.rr.Add(1)
	var err error
	for i := range n {
		base := b.bffs[(first+i)%n]
		var req *http.Request
		req, err = http.NewRequestWithContext(ctx, method, base+path, bytes.NewReader(body))
		if err != nil {
			return nil, fmt.Errorf("request: %w", err)
		}
		for k, v := range hdr {
			req.Header[k] = v
		}
		if method == http.MethodPost || method == http.MethodDelete {
			req.Header.Set("Origin", base) // the BFF checks Origin on changes
		}
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		var resp *http.Response
		resp, err = c.Do(req)
		if err == nil {
			return resp, nil
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			return nil, err
		}
	}
	return nil, err
}

// call makes one request and records it as an Op of kind. A response whose
// body could not be read counts as no response (status 0): what it said
// was not heard.
func (b *browser) call(ctx context.Context, kind, method, path, code string, body []byte, hdr http.Header) Op {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	op := Op{Kind: kind, Browser: b.id, Code: code, Start: time.Now()}
	resp, err := b.send(ctx, b.client, method, path, body, hdr)
	if err != nil {
		op.End, op.Err = time.Now(), err.Error()
		return op
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	_ = resp.Body.Close()
	op.End = time.Now()
	if err != nil {
		op.Err = fmt.Sprintf("status %d, body: %v", resp.StatusCode, err)
		return op
	}
	op.Status = resp.StatusCode
	switch {
	case op.Status == http.StatusOK && (kind == OpList || kind == OpFinalList):
		var l struct{ Exports []Job }
		if err := json.Unmarshal(data, &l); err != nil {
			op.Status, op.Err = 0, fmt.Sprintf("status 200, body: %v", err)
			return op
		}
		op.Jobs = l.Exports
	case op.Status == http.StatusOK || op.Status == http.StatusAccepted:
		var j Job
		if err := json.Unmarshal(data, &j); err != nil {
			op.Status, op.Err = 0, fmt.Sprintf("status %d, body: %v", resp.StatusCode, err)
			return op
		}
		op.Job = &j
		if op.Code == "" {
			op.Code = j.Code
		}
	case op.Status >= 400:
		var e struct{ Error JobError }
		if json.Unmarshal(data, &e) == nil {
			op.ErrCode = e.Error.Code
		}
	}
	return op
}

// download GETs a job's file (whole, or the range r) and records what came
// back: its length and SHA-256, and whether the body was read to its end.
func (b *browser) download(ctx context.Context, kind, code string, rows int, r *ByteRange) Op {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	op := Op{Kind: kind, Browser: b.id, Code: code, RowsTotal: rows, Range: r, Start: time.Now()}
	hdr := http.Header{}
	if r != nil {
		hdr.Set("Range", fmt.Sprintf("bytes=%d-%d", r.Start, r.End))
	}
	resp, err := b.send(ctx, b.client, http.MethodGet, "/api/exports/"+code+"/file", nil, hdr)
	if err != nil {
		op.End, op.Err = time.Now(), err.Error()
		return op
	}
	defer func() { _ = resp.Body.Close() }()
	op.Status, op.ContentRange = resp.StatusCode, resp.Header.Get("Content-Range")
	h := sha256.New()
	n, err := io.Copy(h, io.LimitReader(resp.Body, 64<<20))
	op.End, op.BodyLen, op.BodySHA256 = time.Now(), n, hex.EncodeToString(h.Sum(nil))
	if err != nil {
		op.Err = "body: " + err.Error()
	} else {
		op.Complete = true
	}
	if resp.StatusCode >= 400 && op.Complete {
		op.BodySHA256 = ""
	}
	return op
}

// observe keeps the latest status and file of one of the browser's jobs.
func (b *browser) observe(j *Job) {
	if j == nil || j.Status == StatusError {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	k := b.jobs[j.Code]
	if k == nil {
		return
	}
	k.status, k.rows = j.Status, j.RowsTotal
	if j.File != nil {
		k.file = j.File
	}
}

func (b *browser) accept(j *Job) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.jobs[j.Code]; !ok {
		b.jobs[j.Code] = &known{status: j.Status, rows: j.RowsTotal}
		b.order = append(b.order, j.Code)
	}
}

func (b *browser) markDeleted(code string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if k := b.jobs[code]; k != nil {
		k.deleted = true
	}
}

// reserve counts one more of what n counts (one of b's counters, under
// b.mu), unless limit are already under way; false then.
func (b *browser) reserve(n *int, limit int) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if *n >= limit {
		return false
	}
	*n++
	return true
}

// release counts one less of what n counts.
func (b *browser) release(n *int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	*n--
}

// pick returns one of the browser's jobs that match, chosen by x ∈ [0, 1).
func (b *browser) pick(x float64, match func(*known) bool) (string, known, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var codes []string
	for _, c := range b.order {
		if match(b.jobs[c]) {
			codes = append(codes, c)
		}
	}
	if len(codes) == 0 {
		return "", known{}, false
	}
	c := codes[int(x*float64(len(codes)))]
	return c, *b.jobs[c], true
}

// accepted returns the browser's accepted codes and which were deleted.
func (b *browser) accepted() (codes []string, deleted map[string]bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	deleted = map[string]bool{}
	for _, c := range b.order {
		if b.jobs[c].deleted {
			deleted[c] = true
		}
	}
	return slices.Clone(b.order), deleted
}
