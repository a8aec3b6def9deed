//go:build unix

package stream

import (
	"errors"
	"net"
	"syscall"
)

// rawWriter writes to a socket without waiting for it.
type rawWriter struct{ rc syscall.RawConn }

func rawConn(c net.Conn) rawWriter {
	if sc, ok := c.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			return rawWriter{rc}
		}
	}
	return rawWriter{}
}

func (r rawWriter) ok() bool { return r.rc != nil }

// writeNow writes what the kernel accepts now: n < len(b) with a nil
// error means the socket buffer is full.
func (r rawWriter) writeNow(b []byte) (n int, err error) {
	var werr error
	// The callback returns true even on EAGAIN: that is the point, waiting
	// is the stalled path's job, not the writer's.
	err = r.rc.Write(func(fd uintptr) bool {
		for n < len(b) {
			m, e := syscall.Write(int(fd), b[n:])
			if e == syscall.EINTR {
				continue
			}
			if e != nil {
				if !errors.Is(e, syscall.EAGAIN) {
					werr = e
				}
				return true
			}
			n += m
		}
		return true
	})
	if err != nil {
		return n, err
	}
	return n, werr
}

// fd is the socket's descriptor, for the watcher.
func (r rawWriter) fd() (fd int, ok bool) {
	if r.rc == nil {
		return 0, false
	}
	err := r.rc.Control(func(f uintptr) { fd, ok = int(f), true })
	return fd, ok && err == nil
}
