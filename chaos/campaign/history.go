package campaign

import (
	"sync"
	"time"
)

// The history is everything the campaign saw, with timestamps: each HTTP
// operation (request start, response end, status, the job it returned),
// each subscriber's connections and the events on them, the faults
// injected and the processes' resource readings. The checker judges it
// alone (checker.go), so it can be tested on hand-made histories.

// Job is the job JSON every endpoint and event carries.
type Job struct {
	Code      string    `json:"code"`
	Status    string    `json:"status"`
	Progress  int       `json:"progress"`
	RowsDone  int       `json:"rowsDone"`
	RowsTotal int       `json:"rowsTotal"`
	Seq       int64     `json:"seq"`
	File      *File     `json:"file,omitempty"`
	Error     *JobError `json:"error,omitempty"`
}

// File is a COMPLETED job's file as announced.
type File struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
	URL    string `json:"url"`
}

// JobError is a FAILED job's (or the BFF's ERROR event's) error.
type JobError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Job statuses. ERROR is never a job state: it is the BFF's "I cannot reach
// the truth" that ends a stream.
const (
	StatusPending    = "PENDING"
	StatusInProgress = "IN_PROGRESS"
	StatusCompleted  = "COMPLETED"
	StatusFailed     = "FAILED"
	StatusCancelled  = "CANCELLED"
	StatusError      = "ERROR"
)

// Terminal reports a final job state.
func (j *Job) Terminal() bool {
	return j.Status == StatusCompleted || j.Status == StatusFailed || j.Status == StatusCancelled
}

// Operation kinds.
const (
	OpCreate        = "create"
	OpGet           = "get"
	OpList          = "list"
	OpCancel        = "cancel"
	OpDownload      = "download"
	OpFinalGet      = "final-get"
	OpFinalList     = "final-list"
	OpFinalDownload = "final-download"
)

// Op is one HTTP request a browser made and what came back.
type Op struct {
	Kind    string    `json:"kind"`
	Browser int       `json:"browser"`
	Code    string    `json:"code,omitempty"`
	Key     string    `json:"key,omitempty"` // create: its Idempotency-Key
	Attempt int       `json:"attempt,omitempty"`
	Start   time.Time `json:"start"`
	End     time.Time `json:"end"`
	// Status is the HTTP status; 0 when no response came (transport error).
	Status int    `json:"status"`
	Err    string `json:"err,omitempty"`
	// ErrCode is the JSON error's code of a non-2xx answer.
	ErrCode string `json:"errCode,omitempty"`
	Job     *Job   `json:"job,omitempty"`  // create, get, cancel
	Jobs    []Job  `json:"jobs,omitempty"` // list
	// Downloads: the range asked (nil: whole file), what came back, and
	// whether the body was read to its end.
	Range        *ByteRange `json:"range,omitempty"`
	ContentRange string     `json:"contentRange,omitempty"`
	BodyLen      int64      `json:"bodyLen,omitempty"`
	BodySHA256   string     `json:"bodySha256,omitempty"`
	Complete     bool       `json:"complete,omitempty"`
	RowsTotal    int        `json:"rowsTotal,omitempty"` // the file's identity with Code
}

// ByteRange is an inclusive byte range.
type ByteRange struct {
	Start int64 `json:"start"`
	End   int64 `json:"end"`
}

// Ambiguous reports an answer that does not say whether the request took
// effect: no response, or a 5xx (the BFF's 502 when the backend died mid-
// request, a 503 of a replica losing Redis mid-script).
func (o *Op) Ambiguous() bool { return o.Status == 0 || o.Status >= 500 }

// Accepted reports a 2xx answer.
func (o *Op) Accepted() bool { return o.Status >= 200 && o.Status < 300 }

// Subscriber kinds.
const (
	SubJob       = "job"       // GET /api/exports/{code}/events
	SubMultiplex = "multiplex" // GET /api/events
)

// Why a subscriber ended.
const (
	EndTerminal     = "terminal"      // saw the terminal event and the server ended the response
	EndTerminalOpen = "terminal-open" // saw the terminal event, the server kept the response open
	EndErrorEvent   = "error-event"   // the BFF's ERROR event ended it
	EndNotFound     = "not-found"     // 404 on (re)connect
	EndNoContent    = "no-content"    // 204 on (re)connect
	EndRefused      = "refused"       // 429 (or another 4xx) on (re)connect
	EndAbandoned    = "abandoned"     // the workload closed it on purpose
	EndSatisfied    = "satisfied"     // multiplexed: saw every expected terminal event at the end
	EndDeadline     = "deadline"      // still following when the run ended
)

// Subscriber is one simulated EventSource: a sequence of connections, the
// later ones resuming with Last-Event-ID.
type Subscriber struct {
	ID        int       `json:"id"`
	Browser   int       `json:"browser"`
	Kind      string    `json:"kind"`
	Code      string    `json:"code,omitempty"`
	Start     time.Time `json:"start"`
	End       time.Time `json:"end"`
	EndReason string    `json:"endReason"`
	Conns     []Conn    `json:"conns"`
}

// Conn is one HTTP request of a subscriber.
type Conn struct {
	Start       time.Time `json:"start"`
	LastEventID string    `json:"lastEventId,omitempty"` // sent
	Status      int       `json:"status"`
	ErrCode     string    `json:"errCode,omitempty"` // the JSON error's code of a non-200 answer
	Err         string    `json:"err,omitempty"`
	End         time.Time `json:"end"`
	EndReason   string    `json:"endReason"` // eof, error, idle, closed, reload
	Events      []Event   `json:"events,omitempty"`
}

// Event is one dispatched SSE event: its id as EventSource sees it and the
// job (or ERROR) in its data.
type Event struct {
	At  time.Time `json:"at"`
	ID  string    `json:"id"`
	Job Job       `json:"job"`
}

// ProcSample is one reading of a process: /proc/<pid>/fd, its established
// TCP sockets, and go_goroutines and gauges from its /metrics.
type ProcSample struct {
	At          time.Time          `json:"at"`
	FDs         int                `json:"fds"`
	Established int                `json:"established"`
	Goroutines  int                `json:"goroutines"`
	Gauges      map[string]float64 `json:"gauges,omitempty"`
}

// ProcCheck is a process's baseline and final reading; only survivors
// (never killed) are compared.
type ProcCheck struct {
	Name     string `json:"name"`
	Survivor bool   `json:"survivor"`
	Healed   bool   `json:"healed"`
	HealErr  string `json:"healErr,omitempty"`
	// Crashes are exits nobody asked for; Panics, log lines telling of a
	// panic or a fatal error.
	Crashes []string   `json:"crashes,omitempty"`
	Panics  []string   `json:"panics,omitempty"`
	Base    ProcSample `json:"base"`
	Final   ProcSample `json:"final"`
}

// FaultRecord is a fault as it was injected.
type FaultRecord struct {
	Fault   Fault     `json:"fault"`
	Applied time.Time `json:"applied"`
	Undone  time.Time `json:"undone"`
	Skipped string    `json:"skipped,omitempty"`
	Err     string    `json:"err,omitempty"`
}

// History is one run's record.
type History struct {
	Seed      uint64        `json:"seed"`
	Topology  Topology      `json:"topology"`
	Start     time.Time     `json:"start"`
	FaultsEnd time.Time     `json:"faultsEnd"`
	Faults    []FaultRecord `json:"faults"`
	Ops       []Op          `json:"ops"`
	Subs      []Subscriber  `json:"subs"`
	Procs     []ProcCheck   `json:"procs"`
	// SettleTimedOut: some job was still not terminal when the bounded
	// wait after the faults ended.
	SettleTimedOut bool `json:"settleTimedOut"`
}

// Recorder collects a history from many goroutines.
type Recorder struct {
	mu sync.Mutex
	h  History
}

// NewRecorder starts a history.
func NewRecorder(seed uint64, topo Topology) *Recorder {
	return &Recorder{h: History{Seed: seed, Topology: topo, Start: time.Now()}}
}

// Op records an operation.
func (r *Recorder) Op(o Op) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.h.Ops = append(r.h.Ops, o)
}

// Sub records a finished subscriber.
func (r *Recorder) Sub(s *Subscriber) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.h.Subs = append(r.h.Subs, *s)
}

// Fault records an injected (or skipped) fault.
func (r *Recorder) Fault(f FaultRecord) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.h.Faults = append(r.h.Faults, f)
}

// Update changes the history under the lock.
func (r *Recorder) Update(f func(h *History)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f(&r.h)
}

// History returns the history; call it once every goroutine is done.
func (r *Recorder) History() *History {
	r.mu.Lock()
	defer r.mu.Unlock()
	h := r.h
	return &h
}
