//go:build !linux

package stream

// watcher, where there is no epoll, reads each stream in a goroutine of
// its own: a read returns only when the browser hangs up.
type watcher struct{ p *Pool }

func newWatcher(p *Pool) (*watcher, error) { return &watcher{p: p}, nil }

func (w *watcher) add(s *Stream) error { watchByReading(s); return nil }
func (w *watcher) remove(*Stream)      {}
func (w *watcher) run()                { <-w.p.done }
func (w *watcher) stop()               {}
func (w *watcher) close()              {}
