package campaign

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Proxy is a link under the campaign's control: a loopback TCP proxy in
// front of one or more targets. New connections go to the targets in turn,
// skipping any that refuses (a balancer that skips a dead backend, as
// nginx does in docker-compose.scale.yml). Faults: latency per forwarded
// chunk, reset (every open connection reset, new ones refused), blackhole
// (nothing forwarded either way, connections kept open).
type Proxy struct {
	Name    string
	ln      net.Listener
	targets []string
	next    atomic.Uint64

	mu      sync.Mutex
	latency time.Duration
	refuse  bool
	gate    chan struct{} // closed while not blackholed
	conns   map[net.Conn]struct{}
	done    chan struct{}
	wg      sync.WaitGroup
}

// NewProxy listens on a free loopback port and forwards to targets.
func NewProxy(name string, targets ...string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	open := make(chan struct{})
	close(open)
	p := &Proxy{Name: name, ln: ln, targets: targets, gate: open, conns: map[net.Conn]struct{}{}, done: make(chan struct{})}
	p.wg.Go(p.accept)
	return p, nil
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// SetLatency delays every chunk forwarded, either way, by d (0: none).
func (p *Proxy) SetLatency(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.latency = d
}

// Refuse makes new connections reset at once, as a dead peer's would.
func (p *Proxy) Refuse(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refuse = on
}

// Blackhole stops forwarding on every connection, open and new, until
// Blackhole(false); connections stay open, as behind a dead router.
func (p *Proxy) Blackhole(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
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
}

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
	p.mu.Lock()
	select {
	case <-p.done:
	default:
		close(p.done)
	}
	p.mu.Unlock()
	_ = p.ln.Close()
	p.Blackhole(false)
	p.CutAll()
	p.wg.Wait()
}

func (p *Proxy) state() (time.Duration, bool, chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.latency, p.refuse, p.gate
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

func (p *Proxy) untrack(c net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.conns, c)
}

func (p *Proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if _, refuse, _ := p.state(); refuse || !p.track(c) {
			reset(c)
			continue
		}
		p.wg.Go(func() { p.serve(c) })
	}
}

// serve connects c to a target (once the link lets anything through) and
// forwards both ways until either side ends.
func (p *Proxy) serve(c net.Conn) {
	defer p.untrack(c)
	defer reset(c)
	_, _, gate := p.state()
	select {
	case <-gate:
	case <-p.done:
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
	var wg sync.WaitGroup
	wg.Go(func() { p.pipe(up, c) })
	p.pipe(c, up)
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

// pipe copies src to dst chunk by chunk, each held while the link is
// blackholed and delayed by its latency. A half-close is passed on; any
// error resets both ends.
func (p *Proxy) pipe(dst, src net.Conn) {
	buf := make([]byte, 16*1024)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			latency, _, gate := p.state()
			select {
			case <-gate:
			case <-p.done:
				return
			}
			if latency > 0 {
				t := time.NewTimer(latency)
				select {
				case <-t.C:
				case <-p.done:
					t.Stop()
					return
				}
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				reset(src)
				return
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				if tc, ok := dst.(*net.TCPConn); ok {
					_ = tc.CloseWrite()
					return
				}
			}
			reset(dst)
			return
		}
	}
}

// reset closes c with an RST rather than a FIN, as a dropped link does.
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}
