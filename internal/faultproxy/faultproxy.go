// Package faultproxy is a TCP proxy that tests and the fault campaign put
// between two processes to inject network faults: latency on every chunk
// forwarded, connections reset once a number of bytes came back, new
// connections refused, a blackhole that forwards nothing while keeping
// connections open, and every open connection cut. It listens on loopback
// only.
package faultproxy

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Proxy forwards connections from its loopback address to one or more
// targets. New connections go to the targets in turn, skipping any that
// refuses (a balancer that skips a dead backend).
type Proxy struct {
	ln       net.Listener
	targets  []string
	next     atomic.Uint64
	accepted chan struct{}
	done     chan struct{} // closed by Close
	wg       sync.WaitGroup

	mu      sync.Mutex
	latency time.Duration
	resetAt int64 // reset each new connection after this many bytes back (0: never)
	refuse  bool
	gate    chan struct{} // closed while not blackholed
	conns   map[net.Conn]struct{}
}

// New listens on a free loopback port and forwards to targets ("host:port").
func New(targets ...string) (*Proxy, error) {
	if len(targets) == 0 {
		return nil, errors.New("faultproxy: no target")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("faultproxy: %w", err)
	}
	open := make(chan struct{})
	close(open)
	p := &Proxy{
		ln: ln, targets: targets, accepted: make(chan struct{}, 1024), done: make(chan struct{}),
		gate: open, conns: map[net.Conn]struct{}{},
	}
	p.wg.Go(p.accept)
	return p, nil
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Accepted gets a value for each connection the proxy takes on (not the
// refused ones), blackholed or not; it drops values beyond its 1,024
// unread ones.
func (p *Proxy) Accepted() <-chan struct{} { return p.accepted }

// SetLatency delays every chunk forwarded, either way, by d (0: none).
func (p *Proxy) SetLatency(d time.Duration) { p.set(func() { p.latency = d }) }

// ResetAfter makes new connections reset once n bytes came back from the
// target (mid-message for n inside one); 0 turns it off.
func (p *Proxy) ResetAfter(n int64) { p.set(func() { p.resetAt = n }) }

// Refuse makes new connections reset at once, as a dead peer's would.
func (p *Proxy) Refuse(on bool) { p.set(func() { p.refuse = on }) }

// Blackhole stops forwarding on every connection, open and new, until
// Blackhole(false): what was sent is held and delivered after, new
// connections reach no target until then, and connections stay open, as
// behind a dead router.
func (p *Proxy) Blackhole(on bool) {
	p.set(func() {
		select {
		case <-p.gate: // open
			if on {
				p.gate = make(chan struct{})
			}
		default:
			if !on {
				close(p.gate)
			}
		}
	})
}

// CutAll resets every open connection.
func (p *Proxy) CutAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		reset(c)
	}
}

// Close stops the proxy and its connections, blackholed ones too, and
// waits for its goroutines. It may be called more than once.
func (p *Proxy) Close() {
	p.set(func() {
		select {
		case <-p.done:
		default:
			close(p.done)
		}
	})
	_ = p.ln.Close()
	p.CutAll()
	p.wg.Wait()
}

func (p *Proxy) set(f func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f()
}

// state is what the link does to traffic at this moment.
type state struct {
	latency time.Duration
	resetAt int64
	refuse  bool
	gate    chan struct{}
}

func (p *Proxy) state() state {
	p.mu.Lock()
	defer p.mu.Unlock()
	return state{p.latency, p.resetAt, p.refuse, p.gate}
}

// track adds c to the open connections; false once the proxy closed.
func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.done:
		return false
	default:
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) untrack(c net.Conn) { p.set(func() { delete(p.conns, c) }) }

func (p *Proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if p.state().refuse || !p.track(c) {
			reset(c)
			continue
		}
		select {
		case p.accepted <- struct{}{}:
		default:
		}
		p.wg.Go(func() { p.serve(c) })
	}
}

// serve connects c to a target (once the link lets anything through) and
// forwards both ways until both directions end.
func (p *Proxy) serve(c net.Conn) {
	defer p.untrack(c)
	defer reset(c)
	if !p.wait(p.state().gate) {
		return
	}
	up := p.dial()
	if up == nil || !p.track(up) {
		if up != nil {
			reset(up)
		}
		return
	}
	defer p.untrack(up)
	defer reset(up)
	limit := p.state().resetAt
	var wg sync.WaitGroup
	wg.Go(func() { p.pipe(up, c, 0) })
	p.pipe(c, up, limit)
	wg.Wait()
}

// dial tries every target once, starting with the next in turn.
func (p *Proxy) dial() net.Conn {
	first := p.next.Add(1)
	for i := range uint64(len(p.targets)) {
		t := p.targets[(first+i)%uint64(len(p.targets))]
		if up, err := net.DialTimeout("tcp", t, time.Second); err == nil {
			return up
		}
	}
	return nil
}

// wait waits until ch is closed; false if the proxy closed first.
func (p *Proxy) wait(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	case <-p.done:
		return false
	}
}

// hold holds a chunk while the link is blackholed, then for the latency
// the link had when the chunk arrived; false if the proxy closed first.
func (p *Proxy) hold() bool {
	s := p.state()
	if !p.wait(s.gate) {
		return false
	}
	if s.latency <= 0 {
		return true
	}
	t := time.NewTimer(s.latency)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-p.done:
		return false
	}
}

// pipe copies src to dst chunk by chunk, each held by hold. After limit
// bytes (0: no limit) it resets both ends. A half-close is passed on; any
// error resets both ends.
func (p *Proxy) pipe(dst, src net.Conn, limit int64) {
	buf := make([]byte, 16*1024)
	var sent int64
	for {
		n, err := src.Read(buf)
		if n > 0 {
			chunk := buf[:n]
			if limit > 0 && sent+int64(n) >= limit {
				chunk = chunk[:limit-sent]
			}
			if !p.hold() {
				return
			}
			if _, werr := dst.Write(chunk); werr != nil {
				reset(src)
				return
			}
			if sent += int64(len(chunk)); limit > 0 && sent >= limit {
				reset(dst)
				reset(src)
				return
			}
		}
		if err != nil {
			closeWrite(dst, err)
			return
		}
	}
}

// closeWrite passes on the end of src that err reports: a half-close for
// EOF, a reset for anything else.
func closeWrite(dst net.Conn, err error) {
	if tc, ok := dst.(*net.TCPConn); ok && errors.Is(err, io.EOF) {
		_ = tc.CloseWrite()
		return
	}
	reset(dst)
}

// reset closes c with an RST rather than a FIN, as a dropped link does.
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}
