package httpapi

import (
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/exportstream/exportstream/bff/internal/relay"
	"github.com/exportstream/exportstream/bff/internal/stream"
)

var (
	errScenariosDisabled = errors.New("fault scripts a relay failure for demos and tests; this BFF runs with SCENARIOS=off")
	errInvalidFault      = errors.New("fault must be relay-gives-up, with faultAfterMs 0-3600000 and giveUpMs 0 up to the BFF's UPSTREAM_GIVEUP")
)

// relayFault is `?fault=relay-gives-up` on an event stream: it relays as
// usual for faultAfterMs, then goes silent as when the backend is lost,
// and after giveUpMs (UPSTREAM_GIVEUP by default) sends each job it
// follows the ERROR the relay sends at its give-up. A UI's error path can
// so be tested without stopping a service.
type relayFault struct {
	after, giveUp time.Duration
}

// parseFault reads the fault query of an event stream's request: nil
// without one.
func (s *Server) parseFault(c *gin.Context) (*relayFault, error) {
	kind, ok := c.GetQuery("fault")
	if !ok {
		return nil, nil
	}
	if !s.Scenarios {
		return nil, errScenariosDisabled
	}
	ms := func(key string, upTo, def time.Duration) (time.Duration, bool) {
		v, ok := c.GetQuery(key)
		if !ok {
			return def, true
		}
		n, err := strconv.Atoi(v)
		d := time.Duration(n) * time.Millisecond
		return d, err == nil && n >= 0 && d <= upTo
	}
	after, okAfter := ms("faultAfterMs", time.Hour, 0)
	giveUp, okGiveUp := ms("giveUpMs", s.GiveUp, s.GiveUp)
	if kind != "relay-gives-up" || !okAfter || !okGiveUp {
		return nil, errInvalidFault
	}
	return &relayFault{after: after, giveUp: giveUp}, nil
}

// faulted is a stream source under a relayFault: inner until the fault,
// nothing while the upstream is "lost", then the give-up's ERRORs.
type faulted struct {
	inner stream.Source
	fault relayFault
	// lost, if set, is called as the upstream is "lost".
	lost func()
	// gaveUp appends the ERROR events of the jobs the stream follows; it
	// reports whether the stream then ends.
	gaveUp func(buf []byte) ([]byte, bool)

	mu     sync.Mutex
	state  int // 0 relaying, 1 lost, 2 given up
	timers []*time.Timer
}

func (f *faulted) Start(wake func()) {
	f.inner.Start(wake)
	f.mu.Lock()
	defer f.mu.Unlock()
	set := func(state int) func() {
		return func() {
			if state == 1 && f.lost != nil {
				f.lost()
			}
			f.mu.Lock()
			f.state = max(f.state, state)
			f.mu.Unlock()
			wake()
		}
	}
	f.timers = append(f.timers, time.AfterFunc(f.fault.after, set(1)), time.AfterFunc(f.fault.after+f.fault.giveUp, set(2)))
}

func (f *faulted) Fill(buf []byte) ([]byte, bool) {
	f.mu.Lock()
	state := f.state
	f.mu.Unlock()
	switch state {
	case 0:
		return f.inner.Fill(buf)
	case 1:
		// What the lost upstream would have sent never comes, not even
		// the job's end: the give-up's ERROR is what ends the stream.
		_, _ = f.inner.Fill(nil)
		return buf, false
	}
	return f.gaveUp(buf)
}

func (f *faulted) Closed() {
	f.mu.Lock()
	for _, t := range f.timers {
		t.Stop()
	}
	f.mu.Unlock()
	f.inner.Closed()
}

// withFault wraps one job's stream: at the give-up, its ERROR ends it.
func (j *jobStream) withFault(fault *relayFault, code string) stream.Source {
	if fault == nil {
		return j
	}
	return &faulted{inner: j, fault: *fault, gaveUp: func(buf []byte) ([]byte, bool) {
		return j.append(buf, []relay.Event{relay.Unavailable(code)}), true
	}}
}

// withFault wraps a tab's stream: at the give-up, every job it followed
// when the upstream was "lost" (a job that ended since, unheard of, too)
// or follows now gets its ERROR, and the stream ends.
func (m *sessionStream) withFault(fault *relayFault) stream.Source {
	if fault == nil {
		return m
	}
	followed := map[string]bool{}
	follows := func() {
		for code := range m.subs {
			followed[code] = true
		}
	}
	return &faulted{inner: m, fault: *fault,
		lost: func() {
			m.mu.Lock()
			defer m.mu.Unlock()
			follows()
		},
		gaveUp: func(buf []byte) ([]byte, bool) {
			m.mu.Lock()
			defer m.mu.Unlock()
			follows()
			for code := range followed {
				buf = stream.AppendEvent(buf, "", relay.Unavailable(code).Data)
			}
			return buf, true
		}}
}
