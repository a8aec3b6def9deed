// Package stream serves long-lived event-stream responses over hijacked
// connections, so that an idle stream costs no goroutine and no buffers:
// a few writer goroutines serve every stream, each wake-up writes what a
// stream has ready in one non-blocking write, one watcher notices browsers
// that hang up (epoll on Linux), and one janitor sends heartbeats. Only a
// stream whose browser stopped reading gets a goroutine of its own; it
// waits for the socket up to the write timeout and hands the stream back.
//
// Responses are close-delimited (Connection: close, no Content-Length):
// an event stream ends only by closing its connection anyway.
package stream

import (
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Source is what a stream sends: the pool calls Start once, then Fill
// from one goroutine at a time whenever the stream was woken, and Closed
// once when the stream ends, never while Fill runs.
type Source interface {
	// Start hands the source the function that wakes its stream; call it
	// (from any goroutine, cheaply) when Fill has something new.
	Start(wake func())
	// Fill appends the stream's ready bytes to buf. done ends the stream
	// once they are written.
	Fill(buf []byte) (out []byte, done bool)
	// Closed is called when the stream is over, however it ended.
	Closed()
}

// Config tunes a Pool.
type Config struct {
	// Heartbeat is the silence after which a stream gets a ": ping".
	Heartbeat time.Duration
	// WriteTimeout closes a stream whose writes stay blocked this long
	// (the browser stopped reading). 0: never.
	WriteTimeout time.Duration
	// Writers is the number of writer goroutines; 0: GOMAXPROCS.
	Writers int
	Logger  *slog.Logger
	// SlowDisconnect, if set, counts streams closed by the write timeout.
	SlowDisconnect func()
	// Stalled, if set, counts writes that found the browser's socket full
	// and went to a goroutine to wait for it: the slow path, which a
	// browser that keeps reading never takes.
	Stalled func()
}

// ErrClosed is returned by Open once the pool is closing; the response
// has not been touched, so the caller can still answer.
var ErrClosed = errors.New("stream: pool closed")

var ping = []byte(": ping\n\n")

// Pool owns its streams and goroutines; Close ends them all.
type Pool struct {
	cfg     Config
	writers []*writer
	watch   *watcher
	now     atomic.Int64 // unix nanoseconds, refreshed by the janitor
	nextID  atomic.Uint64
	done    chan struct{}
	loops   sync.WaitGroup // writers, janitor and watcher
	stalls  sync.WaitGroup // goroutines of stalled streams

	mu      sync.Mutex
	streams map[*Stream]struct{}
	closed  bool
}

// NewPool starts a pool's goroutines.
func NewPool(cfg Config) (*Pool, error) {
	if cfg.Writers <= 0 {
		cfg.Writers = runtime.GOMAXPROCS(0)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	p := &Pool{cfg: cfg, done: make(chan struct{}), streams: make(map[*Stream]struct{})}
	p.now.Store(time.Now().UnixNano())
	w, err := newWatcher(p)
	if err != nil {
		return nil, err
	}
	p.watch = w
	p.loops.Add(2 + cfg.Writers)
	go func() { defer p.loops.Done(); p.watch.run() }()
	go func() { defer p.loops.Done(); p.janitor() }()
	for range cfg.Writers {
		wr := &writer{wake: make(chan struct{}, 1)}
		p.writers = append(p.writers, wr)
		go func() { defer p.loops.Done(); wr.run(p.done) }()
	}
	return p, nil
}

// Open takes over w's connection and streams src on it after head (the
// status line, headers and first bytes, written as they are). On
// ErrClosed nothing was done; on any other error the connection is
// closed. Either way src.Closed is not called: the stream never was.
func (p *Pool) Open(w http.ResponseWriter, head []byte, src Source) error {
	if p.isClosed() {
		return ErrClosed
	}
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return err
	}
	// The server's read and write deadlines no longer apply; nothing
	// pipelined behind an event-stream request is read, so net/http's
	// buffers are dropped with the rest of its per-connection state.
	if err := conn.SetDeadline(time.Time{}); err != nil {
		_ = conn.Close()
		return err
	}
	id := p.nextID.Add(1)
	s := &Stream{p: p, id: id, w: p.writers[id%uint64(len(p.writers))], conn: conn, src: src, pending: head}
	s.raw = rawConn(conn)
	s.lastWrite.Store(p.now.Load())
	src.Start(s.schedule)
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		_ = conn.Close()
		return errors.New("stream: pool closed while opening")
	}
	// Registered and watched under one lock, so Close sees either both or
	// neither.
	if err := p.watch.add(s); err != nil {
		p.mu.Unlock()
		_ = conn.Close()
		return err
	}
	p.streams[s] = struct{}{}
	p.mu.Unlock()
	s.registered.Store(true)
	s.schedule()
	return nil
}

// Len is the number of open streams.
func (p *Pool) Len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.streams)
}

// Close ends every stream (browsers reconnect and resume) and waits for
// the pool's goroutines.
func (p *Pool) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.mu.Unlock()
	close(p.done)
	p.watch.stop()
	p.loops.Wait() // no Fill runs from here on, so closing is safe
	p.mu.Lock()
	open := make([]*Stream, 0, len(p.streams))
	for s := range p.streams {
		open = append(open, s)
	}
	p.mu.Unlock()
	for _, s := range open {
		s.close() // a stalled stream's goroutine returns when its write fails
	}
	p.stalls.Wait()
	p.watch.close() // last: every stream was removed from it above
}

func (p *Pool) isClosed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}

// janitor keeps the coarse clock and queues heartbeats: every quarter of
// a heartbeat it wakes the streams that have been quiet for one.
func (p *Pool) janitor() {
	tick := max(p.cfg.Heartbeat/4, 5*time.Millisecond)
	t := time.NewTicker(tick)
	defer t.Stop()
	var quiet []*Stream
	for {
		select {
		case <-p.done:
			return
		case now := <-t.C:
			p.now.Store(now.UnixNano())
			limit := now.UnixNano() - int64(p.cfg.Heartbeat)
			quiet = quiet[:0]
			p.mu.Lock()
			for s := range p.streams {
				if s.lastWrite.Load() <= limit {
					quiet = append(quiet, s)
				}
			}
			p.mu.Unlock()
			for _, s := range quiet {
				s.ping.Store(true)
				s.schedule()
			}
			clear(quiet)
		}
	}
}

// writer flushes the streams queued on it, in order.
type writer struct {
	mu      sync.Mutex
	queue   []*Stream
	spare   []*Stream
	wake    chan struct{}
	scratch []byte
}

func (w *writer) push(s *Stream) {
	w.mu.Lock()
	w.queue = append(w.queue, s)
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *writer) run(done <-chan struct{}) {
	for {
		select {
		case <-done:
			return
		case <-w.wake:
		}
		for {
			w.mu.Lock()
			batch := w.queue
			w.queue, w.spare = w.spare[:0], batch
			w.mu.Unlock()
			if len(batch) == 0 {
				break
			}
			select {
			case <-done:
				return
			default:
			}
			for i, s := range batch {
				batch[i] = nil
				s.flush(w)
			}
		}
	}
}

// Stream is one hijacked response.
type Stream struct {
	p    *Pool
	id   uint64
	w    *writer
	conn net.Conn
	raw  rawWriter // without a raw socket every write takes the stalled path
	src  Source

	registered atomic.Bool  // in the pool and watched: before, wakes are ignored (the first flush drains everything)
	queued     atomic.Bool  // on its writer's queue
	ping       atomic.Bool  // a heartbeat is due
	hangup     atomic.Bool  // the browser closed its end
	stalled    atomic.Bool  // the socket is full: a goroutine of its own owns pending
	closed     atomic.Bool  // closed, or being closed
	lastWrite  atomic.Int64 // the pool's clock at the last write

	// pending is owned by the writer, or while stalled by the stall goroutine.
	pending []byte
	watched bool // registered with the watcher; guarded by the watcher's mutex
}

// schedule queues the stream on its writer unless it is queued already.
func (s *Stream) schedule() {
	if !s.registered.Load() || s.closed.Load() || !s.queued.CompareAndSwap(false, true) {
		return
	}
	s.w.push(s)
}

// flush runs on the stream's writer: it writes what the source has ready
// in one non-blocking write; the remainder, if the socket is full, goes
// to a goroutine that waits for the socket.
func (s *Stream) flush(w *writer) {
	s.queued.Store(false) // before Fill: a wake during Fill queues the stream again
	if s.closed.Load() || s.stalled.Load() {
		return
	}
	if s.hangup.Load() {
		s.close()
		return
	}
	buf := append(w.scratch[:0], s.pending...)
	s.pending = nil
	buf, done := s.src.Fill(buf)
	if s.ping.Swap(false) && len(buf) == 0 {
		buf = append(buf, ping...)
	}
	w.scratch = buf[:0]
	if len(buf) == 0 {
		if done {
			s.close()
		}
		return
	}
	n, err := s.write(buf)
	switch {
	case err != nil:
		s.close()
	case n < len(buf):
		if s.p.cfg.Stalled != nil {
			s.p.cfg.Stalled()
		}
		s.pending = append([]byte(nil), buf[n:]...)
		s.stalled.Store(true)
		s.p.stalls.Add(1)
		go s.waitWritable(done)
	default:
		s.lastWrite.Store(s.p.now.Load())
		if done {
			s.close()
		}
	}
}

// write writes what the kernel takes now, without blocking.
func (s *Stream) write(buf []byte) (int, error) {
	if !s.raw.ok() {
		return 0, nil
	}
	return s.raw.writeNow(buf)
}

// waitWritable writes a stalled stream's pending bytes, blocking up to the
// write timeout, then hands the stream back to its writer.
func (s *Stream) waitWritable(done bool) {
	defer s.p.stalls.Done()
	if d := s.p.cfg.WriteTimeout; d > 0 {
		_ = s.conn.SetWriteDeadline(time.Now().Add(d))
	}
	_, err := s.conn.Write(s.pending)
	s.pending = nil
	if err == nil {
		err = s.conn.SetWriteDeadline(time.Time{})
	}
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) && !s.closed.Load() {
			if s.p.cfg.SlowDisconnect != nil {
				s.p.cfg.SlowDisconnect()
			}
			s.p.cfg.Logger.Info("disconnected a browser that stopped reading", "remote", s.conn.RemoteAddr().String())
		}
		s.close()
		return
	}
	s.lastWrite.Store(s.p.now.Load())
	if done {
		s.close()
		return
	}
	s.stalled.Store(false)
	s.schedule()
}

// close ends the stream once: unwatch, close the connection, tell the source.
func (s *Stream) close() {
	if !s.closed.CompareAndSwap(false, true) {
		return
	}
	s.p.watch.remove(s) // before the descriptor can be reused
	_ = s.conn.Close()
	s.p.mu.Lock()
	delete(s.p.streams, s)
	s.p.mu.Unlock()
	s.src.Closed()
}

// hungUp is the watcher's report that the browser closed its end.
func (s *Stream) hungUp() {
	s.hangup.Store(true)
	s.schedule()
}
