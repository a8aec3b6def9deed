package campaign

import (
	"cmp"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Violation is one broken rule, found in a history.
type Violation struct {
	Rule    string `json:"rule"`
	Code    string `json:"code,omitempty"`
	Browser int    `json:"browser"`
	Detail  string `json:"detail"`
}

func (v Violation) String() string {
	if v.Code == "" {
		return fmt.Sprintf("%s: %s", v.Rule, v.Detail)
	}
	return fmt.Sprintf("%s [%s, browser %d]: %s", v.Rule, v.Code, v.Browser, v.Detail)
}

// The rules. What is legitimate, per ARCHITECTURE.md and the README, is
// named next to each, so the checker does not flag it:
//   - 429 and 503 on a create are refusals: the create was not accepted;
//     4xx in general made nothing.
//   - a create with no response, or a 5xx, is ambiguous: it may or may not
//     have made a job; a retry with the same key must name the same one.
//   - FAILED with INTERRUPTED, STORAGE_FULL, GENERATION_CRASHED… is a
//     terminal state like any other.
//   - the BFF's ERROR event (UPSTREAM_UNAVAILABLE past its give-up) ends a
//     stream; the job need not be terminal on it.
//   - /api/events resumes by snapshots: after a reconnect an id (and a
//     terminal snapshot) may repeat; within one connection it may not.
//   - a job deleted by a DELETE (204, or a DELETE with no clear answer) is
//     404 afterwards.
const (
	RuleIdemTwoJobs          = "idem-two-jobs"          // one key's 2xx answers name two codes
	RuleIdemKeyReused        = "idem-key-reused"        // 409 for a key always sent with the same body
	RuleIdemExtraJob         = "idem-extra-job"         // a session holds more unknown jobs than it has ambiguous keys
	RuleFinalUnreachable     = "final-unreachable"      // after the faults, the job could not be read at all
	RuleLostJob              = "lost-job"               // an accepted, never deleted job is 404
	RuleNotTerminal          = "not-terminal"           // still PENDING/IN_PROGRESS when the bounded wait ended
	RuleTwoTerminalStates    = "two-terminal-states"    // a job seen ending two ways
	RuleChangedAfterTerminal = "changed-after-terminal" // a snapshot newer than the terminal one
	RuleSeqConflict          = "seq-conflict"           // one seq, two different snapshots
	RuleSeqRegress           = "seq-regress"            // a read started after another answered saw an older seq
	RuleAnnouncedFile        = "announced-file-wrong"   // file.sha256/size not the file the job's code and rows make
	RuleIDMismatch           = "id-mismatch"            // an event's id is not its seq (<code>:<seq> on /api/events)
	RuleIDNotIncreasing      = "id-not-increasing"      // a subscriber's ids not strictly increasing
	RuleTerminalTwice        = "terminal-twice"         // a subscriber got two terminal events
	RuleEventAfterTerminal   = "event-after-terminal"   // an event after the terminal one
	RuleMissedTerminal       = "missed-terminal"        // a subscriber open to the end never got the terminal event
	RuleNoContentEarly       = "no-content-before-terminal"
	RuleSpuriousNotFound     = "spurious-not-found" // 404 / ERROR NOT_FOUND for an accepted job never deleted
	RuleOpenAfterTerminal    = "stream-open-after-terminal"
	RuleStreamRegress        = "stream-seq-regress" // /api/events: a code's seq went back across reconnects
	RuleDownloadMismatch     = "download-mismatch"  // 200/206 bytes that are not the file's
	RuleFileMissing          = "file-missing"       // 404/409/410 on the file of a job already seen COMPLETED
	RuleFinalDownload        = "final-download-failed"
	RuleNotHealed            = "not-healed" // a process did not come back once the faults ended
	RuleCrashed              = "crashed"    // a process exited by itself, or its log tells of a panic
	RuleLeak                 = "leak"       // a survivor's fds, goroutines or open streams above its baseline
)

// Leak tolerances, per survivor between its baseline (ready, idle) and the
// end (every client gone, the BFF's upstream linger passed). Pooled
// keep-alive connections are legitimate growth: each established TCP
// socket above the baseline allows one fd and two goroutines (an HTTP/1.1
// client connection holds a read and a write loop; a server connection
// one); besides that a few fds (a log file reopened, the epoll set) and
// goroutines (timers, the Redis pub/sub reconnect) may come and go.
const (
	LeakSlackFDs        = 4
	LeakSlackGoroutines = 8
)

// ActiveGauges are the metrics that must read 0 once every client left.
var ActiveGauges = []string{
	"exportstream_bff_subscribers_active",
	"exportstream_bff_relayed_jobs_active",
	"exportstream_backend_event_streams_active",
}

// Check judges a history and returns every violation, in rule order.
func Check(h *History) []Violation {
	c := newChecker(h)
	c.idempotency()
	c.finalStates()
	c.consistency()
	c.subscribers()
	c.downloads()
	c.processes()
	return c.out
}

type checker struct {
	h        *History
	out      []Violation
	files    files
	accepted map[string]int       // code → browser whose create was answered 2xx
	deleted  map[string]time.Time // code → start of the first DELETE that may have deleted it
	final    map[string]*Op       // code → its last final GET
	obs      map[string][]obs     // code → every snapshot seen of it
}

// obs is one snapshot of a job and where it came from.
type obs struct {
	job        Job
	from       string
	start, end time.Time
	read       bool // a read of the store (GET, list, cancel's answer): real-time ordered
}

func newChecker(h *History) *checker {
	c := &checker{h: h, accepted: map[string]int{}, deleted: map[string]time.Time{}, final: map[string]*Op{}, obs: map[string][]obs{}}
	for i := range h.Ops {
		o := &h.Ops[i]
		switch o.Kind {
		case OpCreate:
			if o.Accepted() && o.Job != nil {
				c.accepted[o.Job.Code] = o.Browser
			}
		case OpCancel:
			if o.Status == http.StatusNoContent || o.Ambiguous() {
				if t, ok := c.deleted[o.Code]; !ok || o.Start.Before(t) {
					c.deleted[o.Code] = o.Start
				}
			}
		case OpFinalGet:
			if p := c.final[o.Code]; p == nil || o.Start.After(p.Start) {
				c.final[o.Code] = o
			}
		}
		c.addOpObs(o)
	}
	for i := range h.Subs {
		s := &h.Subs[i]
		for _, cn := range s.Conns {
			for _, e := range cn.Events {
				if e.Job.Status != StatusError {
					c.obs[e.Job.Code] = append(c.obs[e.Job.Code], obs{job: e.Job, from: fmt.Sprintf("%s subscriber %d", s.Kind, s.ID), start: cn.Start, end: e.At})
				}
			}
		}
	}
	return c
}

func (c *checker) addOpObs(o *Op) {
	add := func(j Job, read bool) {
		c.obs[j.Code] = append(c.obs[j.Code], obs{job: j, from: fmt.Sprintf("%s by browser %d", o.Kind, o.Browser), start: o.Start, end: o.End, read: read})
	}
	switch o.Kind {
	case OpCreate:
		if o.Accepted() && o.Job != nil {
			add(*o.Job, false)
		}
	case OpGet, OpFinalGet, OpCancel:
		if o.Status == http.StatusOK && o.Job != nil {
			add(*o.Job, true)
		}
	case OpList, OpFinalList:
		if o.Status == http.StatusOK {
			for _, j := range o.Jobs {
				add(j, true)
			}
		}
	}
}

func (c *checker) flag(rule, code string, browser int, format string, args ...any) {
	c.out = append(c.out, Violation{Rule: rule, Code: code, Browser: browser, Detail: fmt.Sprintf(format, args...)})
}

// deletedBy reports whether a DELETE that may have deleted code started
// before t.
func (c *checker) deletedBy(code string, t time.Time) bool {
	d, ok := c.deleted[code]
	return ok && !d.After(t)
}

// idempotency: one key never makes two jobs. Seen from outside: every 2xx
// answer for one key names the same code, and the jobs a session holds at
// the end that it was never told about are no more than its keys whose
// answers were all lost or ambiguous (each may have made one job).
func (c *checker) idempotency() {
	keys, order := c.createKeys()
	ambiguous := map[int]int{}
	for _, key := range order {
		k := keys[key]
		if len(k.codes) > 1 {
			c.flag(RuleIdemTwoJobs, k.codes[0], k.browser, "key %s made %d jobs: %s", key, len(k.codes), strings.Join(k.codes, ", "))
		}
		if k.ambiguous && !k.accepted {
			ambiguous[k.browser]++
		}
	}
	lists := c.finalLists()
	browsers := map[int]bool{}
	for _, b := range c.accepted {
		browsers[b] = true
	}
	for _, key := range order {
		browsers[keys[key].browser] = true
	}
	for _, b := range sortedKeys(browsers) {
		if l := lists[b]; l == nil {
			c.flag(RuleFinalUnreachable, "", b, "the session's jobs could not be listed after the faults ended")
		} else {
			c.sessionJobs(b, l, ambiguous[b])
		}
	}
}

// keyState is what the creates sent with one Idempotency-Key were told.
type keyState struct {
	browser   int
	codes     []string // the codes its 2xx answers named
	accepted  bool
	ambiguous bool
}

// createKeys gathers the creates by key, keys in the order first sent, and
// flags a 409 IDEMPOTENCY_KEY_REUSED (the workload never changes a key's
// body).
func (c *checker) createKeys() (map[string]*keyState, []string) {
	keys := map[string]*keyState{}
	var order []string
	for i := range c.h.Ops {
		o := &c.h.Ops[i]
		if o.Kind != OpCreate || o.Key == "" {
			continue
		}
		k := keys[o.Key]
		if k == nil {
			k = &keyState{browser: o.Browser}
			keys[o.Key] = k
			order = append(order, o.Key)
		}
		switch {
		case o.Accepted() && o.Job != nil:
			k.accepted = true
			if !slices.Contains(k.codes, o.Job.Code) {
				k.codes = append(k.codes, o.Job.Code)
			}
		case o.Status == http.StatusConflict && o.ErrCode == "IDEMPOTENCY_KEY_REUSED":
			c.flag(RuleIdemKeyReused, "", o.Browser, "key %s answered 409 IDEMPOTENCY_KEY_REUSED though every attempt sent the same body", o.Key)
		case o.Ambiguous():
			k.ambiguous = true
		}
	}
	return keys, order
}

// finalLists are each browser's last answered list after the faults.
func (c *checker) finalLists() map[int]*Op {
	lists := map[int]*Op{}
	for i := range c.h.Ops {
		o := &c.h.Ops[i]
		if o.Kind == OpFinalList && o.Status == http.StatusOK {
			if p := lists[o.Browser]; p == nil || o.Start.After(p.Start) {
				lists[o.Browser] = o
			}
		}
	}
	return lists
}

// sessionJobs judges the jobs browser b's session holds at the end (its
// final list l) that no create answered with: no more of them than its
// ambiguous keys, each terminal.
func (c *checker) sessionJobs(b int, l *Op, ambiguous int) {
	var unknown []string
	for _, j := range l.Jobs {
		if _, ok := c.accepted[j.Code]; ok {
			continue // accepted ones are judged by their final GET
		}
		unknown = append(unknown, j.Code)
		if !j.Terminal() {
			c.flag(RuleNotTerminal, j.Code, b, "a job the session was never told about (an ambiguous create's) is still %s after the faults ended", j.Status)
		}
	}
	if len(unknown) > ambiguous {
		c.flag(RuleIdemExtraJob, "", b, "the session holds %d jobs no create answered with (%s) but only %d keys whose answers were lost",
			len(unknown), strings.Join(unknown, ", "), ambiguous)
	}
}

// finalStates: every accepted create reached a terminal state, as a final
// GET (after the faults, bounded wait) sees it; 404 only once deleted.
func (c *checker) finalStates() {
	for _, code := range sortedKeys(c.accepted) {
		b := c.accepted[code]
		f := c.final[code]
		switch {
		case f == nil:
			c.flag(RuleFinalUnreachable, code, b, "no final GET was made")
		case f.Status == http.StatusNotFound:
			if _, ok := c.deleted[code]; !ok {
				c.flag(RuleLostJob, code, b, "accepted (2xx) and never deleted, but the final GET answers 404")
			}
		case f.Status != http.StatusOK || f.Job == nil:
			c.flag(RuleFinalUnreachable, code, b, "final GET answered %d %s %s", f.Status, f.ErrCode, f.Err)
		case !f.Job.Terminal():
			c.flag(RuleNotTerminal, code, b, "still %s (seq %d, %d%%) when the bounded wait after the faults ended", f.Job.Status, f.Job.Seq, f.Job.Progress)
		}
	}
}

// consistency: per job, one snapshot per seq, at most one terminal state
// and nothing after it, files announced as the code and rows make them,
// and reads of the store never going back in real time.
func (c *checker) consistency() {
	for _, code := range sortedKeys(c.obs) {
		list := c.obs[code]
		b := c.accepted[code]
		terminals := c.snapshots(code, b, list)
		if len(terminals) > 1 {
			var s []string
			for _, t := range terminals {
				s = append(s, fmt.Sprintf("%s at seq %d (%s)", t.job.Status, t.job.Seq, t.from))
			}
			c.flag(RuleTwoTerminalStates, code, b, "%s", strings.Join(s, "; "))
		} else if len(terminals) == 1 {
			c.afterTerminal(code, b, list, terminals[0])
		}
		c.realTime(code, b, list)
	}
}

// snapshots flags two different snapshots of one seq and a wrongly
// announced file, and returns the distinct terminal snapshots (by seq and
// status) in the order seen.
func (c *checker) snapshots(code string, b int, list []obs) []obs {
	bySeq := map[int64]obs{}
	var terminals []obs
	for _, o := range list {
		if p, ok := bySeq[o.job.Seq]; !ok {
			bySeq[o.job.Seq] = o
		} else if p.job.Status != o.job.Status || p.job.Progress != o.job.Progress || p.job.RowsDone != o.job.RowsDone {
			c.flag(RuleSeqConflict, code, b, "seq %d is %s %d%% (%s) and %s %d%% (%s)", o.job.Seq,
				p.job.Status, p.job.Progress, p.from, o.job.Status, o.job.Progress, o.from)
		}
		if o.job.Terminal() && !slices.ContainsFunc(terminals, func(t obs) bool { return t.job.Seq == o.job.Seq && t.job.Status == o.job.Status }) {
			terminals = append(terminals, o)
		}
		if o.job.File != nil {
			c.announcedFile(code, b, o)
		}
	}
	return terminals
}

// announcedFile: a snapshot announces a file only when COMPLETED, and the
// file the job's code and rows make.
func (c *checker) announcedFile(code string, b int, o obs) {
	want := c.files.get(code, o.job.RowsTotal)
	if o.job.Status != StatusCompleted || o.job.File.SHA256 != SHA256Hex(want) || o.job.File.Size != int64(len(want)) {
		c.flag(RuleAnnouncedFile, code, b, "%s announces %s size %d sha256 %s; %d rows make size %d sha256 %s",
			o.from, o.job.Status, o.job.File.Size, o.job.File.SHA256, o.job.RowsTotal, len(want), SHA256Hex(want))
	}
}

// afterTerminal flags the first snapshot with a seq past the terminal one.
func (c *checker) afterTerminal(code string, b int, list []obs, t obs) {
	for _, o := range list {
		if o.job.Seq > t.job.Seq {
			c.flag(RuleChangedAfterTerminal, code, b, "%s at seq %d (%s) after %s at seq %d (%s)", o.job.Status, o.job.Seq, o.from, t.job.Status, t.job.Seq, t.from)
			return
		}
	}
}

// realTime: a read that started after another read (or a cancel) had
// answered sees at least that one's seq. Events are left out: a relay may
// serve a subscriber what its upstream last had.
func (c *checker) realTime(code string, b int, list []obs) {
	var reads []obs
	for _, o := range list {
		if o.read {
			reads = append(reads, o)
		}
	}
	sort.Slice(reads, func(i, j int) bool { return reads[i].end.Before(reads[j].end) })
	for _, r := range reads {
		for _, p := range reads {
			if !p.end.Before(r.start) {
				break
			}
			if r.job.Seq < p.job.Seq {
				c.flag(RuleSeqRegress, code, b, "%s started %s after %s had answered seq %d (%s), and answered seq %d (%s)",
					r.from, r.start.Sub(p.end).Round(time.Millisecond), p.from, p.job.Seq, p.job.Status, r.job.Seq, r.job.Status)
				return
			}
		}
	}
}

func (c *checker) subscribers() {
	for i := range c.h.Subs {
		s := &c.h.Subs[i]
		if s.Kind == SubMultiplex {
			c.multiplexSub(s)
		} else {
			c.jobSub(s)
		}
	}
}

// subReport flags a subscriber's violations, each rule once per code.
type subReport struct {
	c        *checker
	s        *Subscriber
	prefix   string // before the detail; takes the subscriber's ID
	reported map[string]bool
}

func (c *checker) reportFor(s *Subscriber, prefix string) subReport {
	return subReport{c: c, s: s, prefix: prefix, reported: map[string]bool{}}
}

func (r *subReport) once(rule, code, format string, args ...any) {
	if !r.reported[rule+code] {
		r.reported[rule+code] = true
		r.c.flag(rule, code, r.s.Browser, r.prefix+format, append([]any{r.s.ID}, args...)...)
	}
}

// afterTerminalRule is the rule an event after a terminal one breaks.
func afterTerminalRule(e Event) string {
	if e.Job.Terminal() {
		return RuleTerminalTwice
	}
	return RuleEventAfterTerminal
}

// jobSub: a per-job stream, across its reconnections, has ids = seq
// strictly increasing, one terminal event at most and nothing after it,
// ends after the terminal event, and sees it if it stayed to the end.
func (c *checker) jobSub(s *Subscriber) {
	st := &jobStream{subReport: c.reportFor(s, "subscriber %d: "), prev: -1}
	for _, cn := range s.Conns {
		if cn.Status == http.StatusNotFound {
			// When the answer came: a DELETE sent while the request was
			// on its way may have been served first.
			st.sawNotFound, st.notFoundAt = true, cn.End
		}
		for _, e := range cn.Events {
			st.event(e, cn.LastEventID)
		}
	}
	st.end()
}

// jobStream is what the checker has read so far of a per-job subscriber.
type jobStream struct {
	subReport
	prev        int64 // the highest seq seen
	terminal    *Event
	notFoundAt  time.Time
	sawNotFound bool
}

// event reads one event of a connection opened with lastEventID.
func (st *jobStream) event(e Event, lastEventID string) {
	code := st.s.Code
	if e.Job.Code != code {
		st.once("wrong-code", code, "an event of %s on the stream of %s", e.Job.Code, code)
		return
	}
	if e.Job.Status == StatusError {
		if e.Job.Error != nil && e.Job.Error.Code == "NOT_FOUND" {
			st.sawNotFound, st.notFoundAt = true, e.At
		}
		return
	}
	if e.ID != strconv.FormatInt(e.Job.Seq, 10) {
		st.once(RuleIDMismatch, code, "event id %q carries seq %d", e.ID, e.Job.Seq)
	}
	if t := st.terminal; t != nil {
		st.once(afterTerminalRule(e), code, "%s at seq %d after %s at seq %d", e.Job.Status, e.Job.Seq, t.Job.Status, t.Job.Seq)
	}
	if e.Job.Seq <= st.prev {
		st.once(RuleIDNotIncreasing, code, "seq %d after %d (Last-Event-ID sent on this connection: %q)", e.Job.Seq, st.prev, lastEventID)
	}
	st.prev = max(st.prev, e.Job.Seq)
	if e.Job.Terminal() && st.terminal == nil {
		st.terminal = &e
	}
}

// end judges the NOT_FOUND the stream was told and how it ended.
func (st *jobStream) end() {
	c, code := st.c, st.s.Code
	if st.sawNotFound && !c.deletedBy(code, st.notFoundAt) {
		if _, accepted := c.accepted[code]; accepted {
			st.once(RuleSpuriousNotFound, code, "told NOT_FOUND at %s though the job was accepted and not deleted", st.notFoundAt.Format(time.TimeOnly))
		}
	}
	switch st.s.EndReason {
	case EndNoContent:
		if st.terminal == nil {
			st.once(RuleNoContentEarly, code, "204 No Content on a reconnect with Last-Event-ID %d though no terminal event came", st.prev)
		}
	case EndTerminalOpen:
		st.once(RuleOpenAfterTerminal, code, "the response stayed open after the terminal event")
	case EndDeadline:
		if st.terminal != nil {
			return
		}
		if f := c.final[code]; f != nil && f.Job != nil && f.Job.Terminal() {
			st.once(RuleMissedTerminal, code, "followed to the end (last seq %d) but never got %s (seq %d)", st.prev, f.Job.Status, f.Job.Seq)
		}
	}
}

// multiplexSub: /api/events resumes by snapshots, so within a connection a
// code's seq strictly increases and its terminal snapshot comes once;
// across reconnects a code's seq never goes back. A tab open to the end
// sees the terminal state of each of its session's jobs.
func (c *checker) multiplexSub(s *Subscriber) {
	st := &tabStream{subReport: c.reportFor(s, "multiplexed subscriber %d: "),
		highest: map[string]int64{}, sawTerminal: map[string]bool{}, errored: map[string]bool{}}
	for _, cn := range s.Conns {
		st.conn(cn)
	}
	if s.EndReason == EndDeadline {
		st.missedTerminals()
	}
}

// tabStream is what the checker has read so far of an /api/events
// subscriber, by code.
type tabStream struct {
	subReport
	highest     map[string]int64 // across reconnects
	sawTerminal map[string]bool
	errored     map[string]bool // an ERROR event ended the code
}

// conn reads one connection's events.
func (st *tabStream) conn(cn Conn) {
	prev := map[string]int64{}
	term := map[string]*Event{}
	for _, e := range cn.Events {
		code := e.Job.Code
		if e.Job.Status == StatusError {
			st.errorEvent(e)
			continue
		}
		if e.ID != code+":"+strconv.FormatInt(e.Job.Seq, 10) {
			st.once(RuleIDMismatch, code, "event id %q carries %s:%d", e.ID, code, e.Job.Seq)
		}
		if t := term[code]; t != nil {
			st.once(afterTerminalRule(e), code, "%s at seq %d after %s at seq %d on one connection", e.Job.Status, e.Job.Seq, t.Job.Status, t.Job.Seq)
		}
		if p, ok := prev[code]; ok && e.Job.Seq <= p {
			st.once(RuleIDNotIncreasing, code, "seq %d after %d on one connection", e.Job.Seq, p)
		}
		if h, ok := st.highest[code]; ok && e.Job.Seq < h {
			st.once(RuleStreamRegress, code, "seq %d after a reconnect, %d seen before", e.Job.Seq, h)
		}
		prev[code] = max(prev[code], e.Job.Seq)
		st.highest[code] = max(st.highest[code], e.Job.Seq)
		if e.Job.Terminal() {
			st.sawTerminal[code] = true
			if term[code] == nil {
				term[code] = &e
			}
		}
	}
}

func (st *tabStream) errorEvent(e Event) {
	code := e.Job.Code
	st.errored[code] = true
	if e.Job.Error == nil || e.Job.Error.Code != "NOT_FOUND" || st.c.deletedBy(code, e.At) {
		return
	}
	if _, ok := st.c.accepted[code]; ok {
		st.once(RuleSpuriousNotFound, code, "ERROR NOT_FOUND at %s though the job was accepted and not deleted", e.At.Format(time.TimeOnly))
	}
}

// missedTerminals: a tab open to the end saw the terminal state of each of
// its session's jobs that was not deleted.
func (st *tabStream) missedTerminals() {
	c := st.c
	for _, code := range sortedKeys(c.accepted) {
		if c.accepted[code] != st.s.Browser || st.sawTerminal[code] || st.errored[code] {
			continue
		}
		if _, deleted := c.deleted[code]; deleted {
			continue
		}
		if f := c.final[code]; f != nil && f.Job != nil && f.Job.Terminal() {
			st.once(RuleMissedTerminal, code, "open to the end but never got %s (seq %d); last seq seen %d", f.Job.Status, f.Job.Seq, st.highest[code])
		}
	}
}

// downloads: bytes that came back are the file's (whole or the range
// asked); a file already seen COMPLETED is never 404/409/410 unless
// deleted; after the faults every COMPLETED file downloads whole and by
// Range.
func (c *checker) downloads() {
	completedAt := c.completedAt()
	finals := map[string]*verifiedDownloads{}
	for i := range c.h.Ops {
		o := &c.h.Ops[i]
		if o.Kind != OpDownload && o.Kind != OpFinalDownload {
			continue
		}
		ok := c.download(o)
		switch o.Status {
		case http.StatusNotFound, http.StatusConflict, http.StatusGone:
			if t, seen := completedAt[o.Code]; seen && t.Before(o.Start) && !c.deletedBy(o.Code, o.End) {
				c.flag(RuleFileMissing, o.Code, o.Browser, "%s answered %d %s though the job was seen COMPLETED %s before", o.Kind, o.Status, o.ErrCode, o.Start.Sub(t).Round(time.Millisecond))
			}
		}
		if o.Kind == OpFinalDownload && ok {
			if finals[o.Code] == nil {
				finals[o.Code] = &verifiedDownloads{}
			}
			finals[o.Code].add(o)
		}
	}
	c.finalDownloads(finals)
}

// verifiedDownloads are the kinds of download of one file that verified.
type verifiedDownloads struct{ full, ranged bool }

func (v *verifiedDownloads) add(o *Op) {
	if o.Range == nil {
		v.full = true
	} else {
		v.ranged = true
	}
}

// completedAt is, by code, when a snapshot first showed the job COMPLETED
// (the earliest end of a read or event that saw it).
func (c *checker) completedAt() map[string]time.Time {
	at := map[string]time.Time{}
	for code, list := range c.obs {
		for _, o := range list {
			if o.job.Status != StatusCompleted {
				continue
			}
			if t, ok := at[code]; !ok || o.end.Before(t) {
				at[code] = o.end
			}
		}
	}
	return at
}

// finalDownloads flags each job COMPLETED after the faults, and not
// deleted, whose file was not downloaded and verified both whole and by
// Range (finals).
func (c *checker) finalDownloads(finals map[string]*verifiedDownloads) {
	for _, code := range sortedKeys(c.final) {
		fg := c.final[code]
		if fg.Job == nil || fg.Job.Status != StatusCompleted {
			continue
		}
		if _, deleted := c.deleted[code]; deleted {
			continue
		}
		if f := finals[code]; f == nil || !f.full || !f.ranged {
			c.flag(RuleFinalDownload, code, fg.Browser, "COMPLETED after the faults, but no verified whole and ranged download (last answer: %s)", c.lastFinalDownload(code))
		}
	}
}

// lastFinalDownload is the answer to the last final download of code.
func (c *checker) lastFinalDownload(code string) string {
	var last string
	for i := range c.h.Ops {
		if o := &c.h.Ops[i]; o.Kind == OpFinalDownload && o.Code == code {
			last = strings.TrimSpace(fmt.Sprintf("%d %s %s", o.Status, o.ErrCode, o.Err))
		}
	}
	return last
}

// download judges one download; true when it verified.
func (c *checker) download(o *Op) bool {
	if !o.Complete || (o.Status != http.StatusOK && o.Status != http.StatusPartialContent) {
		return false
	}
	want := c.files.get(o.Code, o.RowsTotal)
	if o.Status == http.StatusOK {
		if o.BodySHA256 != SHA256Hex(want) || o.BodyLen != int64(len(want)) {
			c.flag(RuleDownloadMismatch, o.Code, o.Browser, "%s: 200 with %d bytes sha256 %s; the file is %d bytes sha256 %s (asked range %v)",
				o.Kind, o.BodyLen, o.BodySHA256, len(want), SHA256Hex(want), o.Range)
			return false
		}
		return o.Range == nil // a whole file answering a Range is legal but checks no range
	}
	if o.Range == nil {
		c.flag(RuleDownloadMismatch, o.Code, o.Browser, "%s: 206 to a request without Range", o.Kind)
		return false
	}
	start, end := o.Range.Start, min(o.Range.End, int64(len(want))-1)
	wantCR := fmt.Sprintf("bytes %d-%d/%d", start, end, len(want))
	if start >= int64(len(want)) || o.ContentRange != wantCR || o.BodySHA256 != SHA256Hex(want[start:end+1]) {
		c.flag(RuleDownloadMismatch, o.Code, o.Browser, "%s: 206 %q with %d bytes sha256 %s; want %q sha256 %s",
			o.Kind, o.ContentRange, o.BodyLen, o.BodySHA256, wantCR, SHA256Hex(want[min(start, int64(len(want))):end+1]))
		return false
	}
	return true
}

// processes: every process came back, and survivors' fds, goroutines and
// open streams returned to their baseline (tolerances above).
func (c *checker) processes() {
	for _, p := range c.h.Procs {
		for _, cr := range p.Crashes {
			c.flag(RuleCrashed, "", 0, "%s %s", p.Name, cr)
		}
		for _, line := range p.Panics {
			c.flag(RuleCrashed, "", 0, "%s logged: %s", p.Name, line)
		}
		if !p.Healed {
			c.flag(RuleNotHealed, "", 0, "%s did not come back after the faults: %s", p.Name, p.HealErr)
			continue
		}
		if !p.Survivor {
			continue
		}
		for _, problem := range LeakProblems(p.Name, p.Base, p.Final) {
			c.flag(RuleLeak, "", 0, "%s", problem)
		}
	}
}

// LeakProblems compares a survivor's final reading with its baseline.
func LeakProblems(name string, base, final ProcSample) []string {
	var out []string
	extra := max(0, final.Established-base.Established)
	if final.FDs > base.FDs+LeakSlackFDs+extra {
		out = append(out, fmt.Sprintf("%s: %d fds at the end, %d at its baseline (allowed +%d: %d more established sockets, +%d)",
			name, final.FDs, base.FDs, LeakSlackFDs+extra, extra, LeakSlackFDs))
	}
	if final.Goroutines > base.Goroutines+LeakSlackGoroutines+2*extra {
		out = append(out, fmt.Sprintf("%s: %d goroutines at the end, %d at its baseline (allowed +%d: 2 per each of %d more established sockets, +%d)",
			name, final.Goroutines, base.Goroutines, LeakSlackGoroutines+2*extra, extra, LeakSlackGoroutines))
	}
	for _, g := range ActiveGauges {
		if v := final.Gauges[g]; v > 0 {
			out = append(out, fmt.Sprintf("%s: %s = %g with every client gone", name, g, v))
		}
	}
	return out
}

func sortedKeys[K cmp.Ordered, V any](m map[K]V) []K { return slices.Sorted(maps.Keys(m)) }
