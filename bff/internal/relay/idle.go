package relay

import (
	"errors"
	"io"
	"net/http"
	"sync"
	"time"
)

// errUpstreamSilent ends an upstream read that saw no byte for too long.
var errUpstreamSilent = errors.New("the backend sent nothing, not even a heartbeat, for too long")

// idleTimeoutClient returns a client whose response bodies fail when no
// byte arrives for d: a stalled connection (a half-dead peer, a proxy that
// stopped forwarding) is noticed through the backend's missing heartbeats
// and reconnected, instead of hanging forever. d <= 0 returns c unchanged.
func idleTimeoutClient(c *http.Client, d time.Duration) *http.Client {
	if d <= 0 {
		return c
	}
	cc := *c
	base := c.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	cc.Transport = transportFunc(func(r *http.Request) (*http.Response, error) {
		resp, err := base.RoundTrip(r)
		if err == nil {
			resp.Body = newIdleBody(resp.Body, d)
		}
		return resp, err
	})
	return &cc
}

type transportFunc func(*http.Request) (*http.Response, error)

func (f transportFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// idleBody closes the body when a read waits longer than d.
type idleBody struct {
	body  io.ReadCloser
	d     time.Duration
	timer *time.Timer

	mu     sync.Mutex
	silent bool
}

func newIdleBody(body io.ReadCloser, d time.Duration) *idleBody {
	b := &idleBody{body: body, d: d}
	b.timer = time.AfterFunc(d, func() {
		b.mu.Lock()
		b.silent = true
		b.mu.Unlock()
		_ = body.Close() // unblocks the pending Read
	})
	return b
}

func (b *idleBody) Read(p []byte) (int, error) {
	n, err := b.body.Read(p)
	if n > 0 {
		b.timer.Reset(b.d)
	}
	if err != nil {
		b.mu.Lock()
		silent := b.silent
		b.mu.Unlock()
		if silent {
			return n, errUpstreamSilent
		}
	}
	return n, err
}

func (b *idleBody) Close() error {
	b.timer.Stop()
	return b.body.Close()
}
