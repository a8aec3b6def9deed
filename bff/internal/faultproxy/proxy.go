// Package faultproxy is a TCP proxy for tests that injects network faults
// between the BFF and the backend: added latency, connections reset after
// a number of bytes, stalls that forward nothing, cut connections.
// It listens on loopback only and stops with its test.
package faultproxy

import (
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// Proxy forwards connections from its loopback address to a target.
type Proxy struct {
	ln     net.Listener
	target string

	mu      sync.Mutex
	latency time.Duration
	resetAt int64 // cut each new connection after this many bytes back (0: never)
	stalled bool
	conns   map[net.Conn]struct{}
	wg      sync.WaitGroup

	// Accepted gets a value for each connection the proxy forwards.
	Accepted chan struct{}
}

// New starts a proxy to target ("host:port").
func New(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{ln: ln, target: target, conns: make(map[net.Conn]struct{}), Accepted: make(chan struct{}, 1024)}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// URL is the proxy's http:// address.
func (p *Proxy) URL() string { return "http://" + p.ln.Addr().String() }

// SetLatency delays every chunk forwarded in either direction.
func (p *Proxy) SetLatency(d time.Duration) { p.set(func() { p.latency = d }) }

// ResetAfter makes new connections reset once n bytes came back from the
// target (mid-event for n inside an event); 0 turns it off.
func (p *Proxy) ResetAfter(n int64) { p.set(func() { p.resetAt = n }) }

// Stall makes open and new connections forward nothing until Stall(false).
func (p *Proxy) Stall(on bool) { p.set(func() { p.stalled = on }) }

// CutAll resets every open connection.
func (p *Proxy) CutAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		reset(c)
	}
}

// Close stops the proxy and its connections and waits for its goroutines.
func (p *Proxy) Close() {
	_ = p.ln.Close()
	p.CutAll()
	p.wg.Wait()
}

func (p *Proxy) set(f func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f()
}

// faults is what the proxy does to traffic at one moment.
type faults struct {
	latency time.Duration
	stalled bool
}

func (p *Proxy) current() faults {
	p.mu.Lock()
	defer p.mu.Unlock()
	return faults{p.latency, p.stalled}
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			reset(c)
			continue
		}
		p.mu.Lock()
		p.conns[c], p.conns[up] = struct{}{}, struct{}{}
		resetAt := p.resetAt
		p.mu.Unlock()
		select {
		case p.Accepted <- struct{}{}:
		default:
		}
		p.wg.Add(2)
		go p.pipe(up, c, 0)
		go p.pipe(c, up, resetAt)
	}
}

// pipe copies src to dst in chunks, applying the current faults; limit
// (if set) resets both ends after that many bytes.
func (p *Proxy) pipe(dst, src net.Conn, limit int64) {
	defer p.wg.Done()
	defer func() {
		p.mu.Lock()
		delete(p.conns, dst)
		delete(p.conns, src)
		p.mu.Unlock()
		reset(dst)
		reset(src)
	}()
	buf := make([]byte, 4096)
	var sent int64
	for {
		n, err := src.Read(buf)
		chunk := buf[:n]
		for len(chunk) > 0 {
			f := p.current()
			if f.stalled {
				time.Sleep(10 * time.Millisecond) // a stalled link: hold the bytes
				continue
			}
			time.Sleep(f.latency)
			if limit > 0 && sent+int64(len(chunk)) >= limit {
				_, _ = dst.Write(chunk[:limit-sent])
				return
			}
			w, werr := dst.Write(chunk)
			sent += int64(w)
			if werr != nil {
				return
			}
			chunk = chunk[w:]
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				return
			}
			if tc, ok := dst.(*net.TCPConn); ok {
				_ = tc.CloseWrite()
			}
			return
		}
	}
}

// reset closes c with an RST rather than a FIN, as a dropped link looks.
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}
