package httpapi

import (
	"errors"
	"math"
	"sync"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/exportstream/exportstream/bff/internal/connlimit"
)

// Limits are per session and per client address (clientaddr.go). The
// session's come first: a browser flooding with its cookie is refused by
// its own limit without using up its address's, which an office behind
// one NAT shares. The address's are what a client that drops its cookie
// (a fresh session, fresh session limits, on every request) still meets.

var (
	errTooManyStreams = errors.New("this session has too many open event streams; use /api/events")
	// errAddressStreams: one address holds many sessions' streams.
	errAddressStreams = errors.New("too many open event streams from this address; close some or try again later")
	// errServerBusy also closes the connection: an idle one kept by a
	// browser that cannot stream here would hold a file to no use.
	errServerBusy = errors.New("this server has too many open event streams; try again later")
	// errServerFull answers a request on a connection past the open-file
	// budget (connlimit), and closes it.
	errServerFull = errors.New("this server has no room for another connection; try again later")
	// errAddressRateLimited: creates from one address, whatever their sessions.
	errAddressRateLimited = errors.New("too many exports started from this address; slow down")
	// errTooManySessions: new sessions (requests without a valid cookie
	// that would start one) from one address.
	errTooManySessions = errors.New("too many new sessions from this address; keep the session cookie, or slow down")
)

// retryLater is a rate limit's refusal: the limit's error, and how long
// until its bucket has a token again (the answer's Retry-After).
type retryLater struct {
	err   error
	after time.Duration
}

func (e *retryLater) Error() string { return e.err.Error() }
func (e *retryLater) Unwrap() error { return e.err }

// retryAfterSeconds is d as a Retry-After: whole seconds, rounded up, at
// least 1 (0 would invite an immediate retry that is refused again).
func retryAfterSeconds(d time.Duration) int64 {
	return max(1, int64(math.Ceil(d.Seconds())))
}

// sessionFor is the browser's session, started if it has none: a start
// takes a token from the address's new-session bucket first. An expired
// session is errSessionExpired, not replaced: a new one would silently lose
// the browser's exports, so only POST /api/session (newSession) replaces
// it, when the page chooses to.
func (s *Server) sessionFor(c *gin.Context) (string, error) {
	if id, err := requireSession(c); !errors.Is(err, errNotFound) {
		return id, err // the browser's session, or errSessionExpired
	}
	if err := s.allowNewSession(c); err != nil {
		return "", err
	}
	return s.startSession(c), nil
}

// allowNewSession takes a token from the address's new-session bucket.
func (s *Server) allowNewSession(c *gin.Context) error {
	if ok, wait := s.byAddr.sessions.take(s.clientAddress(c)); !ok {
		return &retryLater{errTooManySessions, wait}
	}
	return nil
}

// allowCreate takes a token from the session's create bucket, then from
// its address's.
func (s *Server) allowCreate(c *gin.Context, sid string) error {
	if ok, wait := s.creates.take(sid); !ok {
		return &retryLater{errRateLimited, wait}
	}
	if ok, wait := s.byAddr.creates.take(s.clientAddress(c)); !ok {
		return &retryLater{errAddressRateLimited, wait}
	}
	return nil
}

// addressLimiters are the rate limits per client address.
type addressLimiters struct {
	sessions *rateLimiter // new sessions
	creates  *rateLimiter
}

func newAddressLimiters(cfg Config) addressLimiters {
	return addressLimiters{
		sessions: newRateLimiter(cfg.AddressSessionRate, cfg.AddressSessionBurst, cfg.Now),
		creates:  newRateLimiter(cfg.AddressCreateRate, cfg.AddressCreateBurst, cfg.Now),
	}
}

// clientAddress is the key of the client that sent c's request.
func (s *Server) clientAddress(c *gin.Context) string {
	return clientAddress(c.Request, s.TrustedProxies)
}

// streamLimits counts open event streams per session, per client address
// and in all. A count that falls to 0 is deleted: the maps hold only
// what is open.
type streamLimits struct {
	mu                           sync.Mutex
	perSession, perAddress       map[string]int
	total                        int
	maxPer, maxAddress, maxTotal int
}

func newStreamLimits(maxPer, maxAddress, maxTotal int) *streamLimits {
	return &streamLimits{
		perSession: make(map[string]int), perAddress: make(map[string]int),
		maxPer: maxPer, maxAddress: maxAddress, maxTotal: maxTotal,
	}
}

// acquire counts a stream of session sid from address addr, or refuses it.
func (l *streamLimits) acquire(sid, addr string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.maxTotal > 0 && l.total >= l.maxTotal:
		return errServerBusy
	case l.maxPer > 0 && l.perSession[sid] >= l.maxPer:
		return errTooManyStreams
	case l.maxAddress > 0 && l.perAddress[addr] >= l.maxAddress:
		return errAddressStreams
	}
	l.perSession[sid]++
	l.perAddress[addr]++
	l.total++
	return nil
}

// release uncounts a stream acquire counted.
func (l *streamLimits) release(sid, addr string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	decrement(l.perSession, sid)
	decrement(l.perAddress, addr)
}

func decrement(m map[string]int, key string) {
	if m[key]--; m[key] <= 0 {
		delete(m, key)
	}
}

// maxBuckets bounds a rateLimiter's map.
const maxBuckets = 100_000

// rateLimiter is a token bucket per key (a session, a client address).
// Its map is bounded: at maxBuckets, buckets that have refilled are
// forgotten (a full bucket is the same as none); if that is not enough
// (more keys than that active within a refill), a quarter of the rest
// are, at random: the bound on memory wins over the limit of the keys
// forgotten, which start full again. Evicting a quarter at once keeps
// the sweeps (each over the whole map) to one per maxBuckets/4 new keys.
type rateLimiter struct {
	mu      sync.Mutex
	rate    float64 // tokens a second; 0: no limit
	burst   float64
	max     int // buckets kept at most
	buckets map[string]*bucket
	now     func() time.Time
}

type bucket struct {
	tokens float64
	at     time.Time
}

// newRateLimiter returns a limiter of rate tokens a second and burst at
// once per key, on the clock now (nil: time.Now).
func newRateLimiter(rate float64, burst int, now func() time.Time) *rateLimiter {
	if now == nil {
		now = time.Now
	}
	return &rateLimiter{rate: rate, burst: float64(burst), max: maxBuckets, buckets: make(map[string]*bucket), now: now}
}

// take takes a token from key's bucket; when it has none, it says how
// long until it has one.
func (r *rateLimiter) take(key string) (bool, time.Duration) {
	if r.rate <= 0 {
		return true, 0
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	b, ok := r.buckets[key]
	if !ok {
		if len(r.buckets) >= r.max {
			r.makeRoom(now)
		}
		b = &bucket{tokens: r.burst, at: now}
		r.buckets[key] = b
	}
	b.tokens = min(r.burst, b.tokens+now.Sub(b.at).Seconds()*r.rate)
	b.at = now
	if b.tokens < 1 {
		return false, time.Duration((1 - b.tokens) / r.rate * float64(time.Second))
	}
	b.tokens--
	return true, 0
}

// makeRoom forgets the buckets that have refilled, and if fewer than a
// quarter of the map did, forgets others until a quarter is free.
func (r *rateLimiter) makeRoom(now time.Time) {
	for k, b := range r.buckets {
		if b.tokens+now.Sub(b.at).Seconds()*r.rate >= r.burst {
			delete(r.buckets, k)
		}
	}
	for k := range r.buckets { // map order: at random
		if len(r.buckets) <= r.max*3/4 {
			break
		}
		delete(r.buckets, k)
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
