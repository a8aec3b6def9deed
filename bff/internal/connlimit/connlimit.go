// Package connlimit keeps a server inside its open-file budget. Every
// connection costs a file; when a process runs out, accept fails and
// net/http retries it with a backoff while new clients wait in the
// listen backlog: they hang until they give up. A Listener instead stops
// short of the limit, and the server answers each connection past it
// with a 503 at once.
package connlimit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"syscall"
	"time"
)

// FileLimit is the process's open-file limit (the soft RLIMIT_NOFILE,
// which the Go runtime raises to the hard one at start).
func FileLimit() (int, error) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0, fmt.Errorf("read the open-file limit: %w", err)
	}
	if l.Cur > 1<<30 {
		return 1 << 30, nil
	}
	return int(l.Cur), nil
}

// Refusing bounds the connections past the limit being answered at once:
// each holds a file (count them in the reserve) for at most
// refuseTimeout. When every slot is taken, Accept waits slotWait for one,
// then closes the connection without an answer.
const (
	Refusing      = 16
	refuseTimeout = time.Second
	slotWait      = refuseTimeout
)

// Listener accepts at most max connections open at once. A connection
// past them is still accepted, as long as a refusing slot is free, but
// marked: the server answers its request 503 (see OverBudget) and closes
// it. Refusing through the server's own request handling, rather than
// by writing to the socket, answers only after the request has come and
// ends the connection as HTTP clients expect.
type Listener struct {
	net.Listener
	max      int64
	open     atomic.Int64
	refusals chan struct{} // a semaphore of refusing slots
}

// NewListener returns ln limited to maxOpen open connections.
func NewListener(ln net.Listener, maxOpen int) *Listener {
	return &Listener{Listener: ln, max: int64(maxOpen), refusals: make(chan struct{}, Refusing)}
}

// Open is the number of accepted connections within the limit not
// closed yet.
func (l *Listener) Open() int { return int(l.open.Load()) }

// Accept returns the next connection.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.open.Add(1) <= l.max {
			return &conn{Conn: c, l: l}, nil
		}
		l.open.Add(-1)
		if l.refusalSlot() {
			over := &conn{Conn: c, l: l, over: time.Now().Add(refuseTimeout)}
			_ = c.SetDeadline(over.over)
			return over, nil
		}
		_ = c.Close()
	}
}

// refusalSlot takes a refusing slot, waiting at most slotWait: a burst
// (browsers coming back together) frees them within milliseconds, silent
// clients hold them up to refuseTimeout.
func (l *Listener) refusalSlot() bool {
	select {
	case l.refusals <- struct{}{}:
		return true
	default:
	}
	wait := time.NewTimer(slotWait)
	defer wait.Stop()
	select {
	case l.refusals <- struct{}{}:
		return true
	case <-wait.C:
		return false
	}
}

type overBudgetKey struct{}

// ConnContext marks the requests of a connection past the limit; set it
// as the http.Server's ConnContext.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	if cc, ok := c.(*conn); ok && !cc.over.IsZero() {
		return context.WithValue(ctx, overBudgetKey{}, true)
	}
	return ctx
}

// OverBudget reports whether the request came on a connection past the
// limit: answer it 503 with Connection: close.
func OverBudget(ctx context.Context) bool {
	over, _ := ctx.Value(overBudgetKey{}).(bool)
	return over
}

// conn gives its slot back when closed: its place in the limit, or its
// refusing slot if it is past the limit.
type conn struct {
	net.Conn
	l      *Listener
	closed atomic.Bool
	over   time.Time // past the limit: its deadline, which the server may not extend
}

func (c *conn) Close() error {
	if c.closed.CompareAndSwap(false, true) {
		if c.over.IsZero() {
			c.l.open.Add(-1)
		} else {
			<-c.l.refusals
		}
	}
	return c.Conn.Close()
}

func (c *conn) clamp(t time.Time) time.Time {
	if !c.over.IsZero() && (t.IsZero() || t.After(c.over)) {
		return c.over
	}
	return t
}

func (c *conn) SetDeadline(t time.Time) error     { return c.Conn.SetDeadline(c.clamp(t)) }
func (c *conn) SetReadDeadline(t time.Time) error { return c.Conn.SetReadDeadline(c.clamp(t)) }
func (c *conn) SetWriteDeadline(t time.Time) error {
	return c.Conn.SetWriteDeadline(c.clamp(t))
}

var errNoSyscallConn = errors.New("connlimit: the connection has no file descriptor")

// SyscallConn gives the stream pool the socket to write without waiting.
func (c *conn) SyscallConn() (syscall.RawConn, error) {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return nil, errNoSyscallConn
	}
	return sc.SyscallConn()
}

// ReadFrom keeps the socket's own copy path (splice) for proxied downloads.
func (c *conn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, r)
}

// Budget splits the open-file limit files: reserved for the process's own
// use (its listener, epoll set, logs, connections to the backend), the
// rest for client connections; of those, headroom is kept from event
// streams so that a server full of streams still answers the requests
// that are not (health checks, creates, downloads). maxStreams, if
// positive, caps streams further.
func Budget(files, reserved, headroom, maxStreams int) (conns, streams int) {
	conns = max(files-reserved, 1)
	streams = max(conns-headroom, 1)
	if maxStreams > 0 {
		streams = min(streams, maxStreams)
	}
	return conns, streams
}
