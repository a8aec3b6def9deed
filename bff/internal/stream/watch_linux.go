package stream

import (
	"fmt"
	"sync"
	"syscall"
)

// watcher tells the pool when a browser hangs up, with one epoll set for
// every stream instead of a goroutine blocked in Read on each. It asks
// only for EPOLLRDHUP (plus the implicit HUP and ERR): bytes a browser
// sends after its request are never read, and must not wake anyone.
type watcher struct {
	p      *Pool
	epfd   int
	stopR  int // a pipe whose read end, when readable, stops run
	stopW  int
	mu     sync.Mutex
	byID   map[uint64]*Stream
	closed bool // the descriptors are closed; guarded by mu
	events []syscall.EpollEvent
}

const stopID = 0 // stream ids start at 1

// epollCtl is syscall.EpollCtl; a test sees every call through it.
var epollCtl = syscall.EpollCtl

func newWatcher(p *Pool) (*watcher, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll: %w", err)
	}
	var fds [2]int
	if err := syscall.Pipe2(fds[:], syscall.O_CLOEXEC|syscall.O_NONBLOCK); err != nil {
		_ = syscall.Close(epfd)
		return nil, fmt.Errorf("pipe: %w", err)
	}
	w := &watcher{p: p, epfd: epfd, stopR: fds[0], stopW: fds[1], byID: make(map[uint64]*Stream), events: make([]syscall.EpollEvent, 256)}
	if err := w.ctl(syscall.EPOLL_CTL_ADD, w.stopR, syscall.EPOLLIN, stopID); err != nil {
		w.closeFDs()
		return nil, err
	}
	return w, nil
}

func (w *watcher) ctl(op, fd int, events uint32, id uint64) error {
	// The event's 64-bit user data is the stream id, not the descriptor:
	// a descriptor number is reused as soon as it is closed.
	ev := syscall.EpollEvent{Events: events, Fd: int32(uint32(id)), Pad: int32(uint32(id >> 32))}
	if err := epollCtl(w.epfd, op, fd, &ev); err != nil {
		return fmt.Errorf("epoll_ctl: %w", err)
	}
	return nil
}

// add watches s. A stream without a raw socket is watched by a goroutine.
func (w *watcher) add(s *Stream) error {
	fd, ok := s.raw.fd()
	if !ok {
		watchByReading(s)
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.ctl(syscall.EPOLL_CTL_ADD, fd, syscall.EPOLLRDHUP, s.id); err != nil {
		return err
	}
	w.byID[s.id] = s
	s.watched = true
	return nil
}

// remove stops watching s; the caller closes s's descriptor only after.
func (w *watcher) remove(s *Stream) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.removeLocked(s)
}

func (w *watcher) removeLocked(s *Stream) {
	if !s.watched {
		return
	}
	s.watched = false
	delete(w.byID, s.id)
	if fd, ok := s.raw.fd(); ok && !w.closed {
		_ = w.ctl(syscall.EPOLL_CTL_DEL, fd, 0, s.id)
	}
}

// run reports hang-ups until stop. It leaves the descriptors open: the
// pool removes its streams from the epoll set after run returns, then
// calls close.
func (w *watcher) run() {
	for {
		n, err := syscall.EpollWait(w.epfd, w.events, -1)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			w.p.cfg.Logger.Error("epoll_wait: hang-ups are noticed on the next heartbeat only", "err", err)
			<-w.p.done
			return
		}
		var gone []*Stream
		w.mu.Lock()
		for _, ev := range w.events[:n] {
			id := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
			if id == stopID {
				w.mu.Unlock()
				return
			}
			if s := w.byID[id]; s != nil {
				w.removeLocked(s) // level-triggered: it would fire again
				gone = append(gone, s)
			}
		}
		w.mu.Unlock()
		for _, s := range gone {
			s.hungUp()
		}
	}
}

// stop makes run return.
func (w *watcher) stop() { _, _ = syscall.Write(w.stopW, []byte{1}) }

// close releases the descriptors once, after run returned and the pool
// closed its streams; a remove after it does nothing, since the epoll
// fd's number may already belong to another file.
func (w *watcher) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return
	}
	w.closed = true
	w.closeFDs()
}

func (w *watcher) closeFDs() {
	_ = syscall.Close(w.epfd)
	_ = syscall.Close(w.stopR)
	_ = syscall.Close(w.stopW)
}
