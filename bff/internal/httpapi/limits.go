package httpapi

import (
	"errors"
	"sync"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/exportstream/exportstream/bff/internal/connlimit"
)

var (
	errTooManyStreams = errors.New("this session has too many open event streams; use /api/events")
	// errServerBusy also closes the connection: an idle one kept by a
	// browser that cannot stream here would hold a file to no use.
	errServerBusy = errors.New("this server has too many open event streams; try again later")
	// errServerFull answers a request on a connection past the open-file
	// budget (connlimit), and closes it.
	errServerFull = errors.New("this server has no room for another connection; try again later")
)

// streamLimits counts open event streams per session and in all.
type streamLimits struct {
	mu               sync.Mutex
	perSession       map[string]int
	total            int
	maxPer, maxTotal int
}

func newStreamLimits(maxPer, maxTotal int) *streamLimits {
	return &streamLimits{perSession: make(map[string]int), maxPer: maxPer, maxTotal: maxTotal}
}

func (l *streamLimits) acquire(sid string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.maxTotal > 0 && l.total >= l.maxTotal:
		return errServerBusy
	case l.maxPer > 0 && l.perSession[sid] >= l.maxPer:
		return errTooManyStreams
	}
	l.perSession[sid]++
	l.total++
	return nil
}

func (l *streamLimits) release(sid string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if l.perSession[sid]--; l.perSession[sid] <= 0 {
		delete(l.perSession, sid)
	}
}

// rateLimiter is a token bucket per session.
type rateLimiter struct {
	mu      sync.Mutex
	rate    float64
	burst   float64
	buckets map[string]*bucket
	now     func() time.Time
}

type bucket struct {
	tokens float64
	at     time.Time
}

func newRateLimiter(rate float64, burst int) *rateLimiter {
	return &rateLimiter{rate: rate, burst: float64(burst), buckets: make(map[string]*bucket), now: time.Now}
}

func (r *rateLimiter) allow(key string) bool {
	if r.rate <= 0 {
		return true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	b, ok := r.buckets[key]
	if !ok {
		if len(r.buckets) >= 100_000 {
			r.forgetFull(now)
		}
		b = &bucket{tokens: r.burst, at: now}
		r.buckets[key] = b
	}
	b.tokens = min(r.burst, b.tokens+now.Sub(b.at).Seconds()*r.rate)
	b.at = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// forgetFull drops buckets that have refilled: they are the same as new.
func (r *rateLimiter) forgetFull(now time.Time) {
	for k, b := range r.buckets {
		if b.tokens+now.Sub(b.at).Seconds()*r.rate >= r.burst {
			delete(r.buckets, k)
		}
	}
}

// refuseOverBudget answers every request on a connection past the
// open-file budget 503 at once.
func refuseOverBudget(c *gin.Context) error {
	if connlimit.OverBudget(c.Request.Context()) {
		return errServerFull
	}
	return nil
}
