package campaign

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/exportstream/exportstream/internal/exportfile"
)

// The checker is what must be able to fail: each rule is shown a history
// that breaks it, and a history full of legal-but-odd behaviour (ambiguous
// creates, refusals, an orphan job of a lost answer, ERROR events,
// FAILED/CANCELLED jobs, a deleted job's 404, repeated snapshots on
// /api/events reconnects, pooled connections) that breaks none.

const (
	codeA = "aaaaaaaa-0000-4000-8000-00000000000a" // COMPLETED, followed and downloaded
	codeB = "bbbbbbbb-0000-4000-8000-00000000000b" // FAILED INTERRUPTED
	codeC = "cccccccc-0000-4000-8000-00000000000c" // CANCELLED by a DELETE
	codeD = "dddddddd-0000-4000-8000-00000000000d" // finished, then deleted
	codeE = "eeeeeeee-0000-4000-8000-00000000000e" // made by a create whose answers were lost
	rowsA = 10
)

var t0 = time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)

func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

func job(code, status string, seq int64, progress int) Job {
	j := Job{Code: code, Status: status, Seq: seq, Progress: progress, RowsTotal: rowsA, RowsDone: progress * rowsA / 100}
	switch status {
	case StatusCompleted:
		f := expectedFile(code, rowsA)
		j.File = &File{Name: "export.csv", Size: int64(len(f)), SHA256: SHA256Hex(f), URL: "/api/exports/" + code + "/file"}
	case StatusFailed:
		j.Error = &JobError{Code: "INTERRUPTED", Message: "the backend stopped"}
	}
	return j
}

func jp(j Job) *Job { return &j }

func ev(ms int, id string, j Job) Event { return Event{At: at(ms), ID: id, Job: j} }

func errorEvent(ms int, code, errCode string) Event {
	return Event{At: at(ms), Job: Job{Code: code, Status: StatusError, Error: &JobError{Code: errCode}}}
}

func download(ms int, kind, code string, r *ByteRange) Op {
	f := expectedFile(code, rowsA)
	o := Op{Kind: kind, Browser: 1, Code: code, RowsTotal: rowsA, Range: r, Start: at(ms), End: at(ms + 5), Complete: true}
	if r == nil {
		o.Status, o.BodyLen, o.BodySHA256 = 200, int64(len(f)), SHA256Hex(f)
	} else {
		end := min(r.End, int64(len(f))-1) // a range past the end is served up to it
		o.Status, o.BodyLen, o.BodySHA256 = 206, end-r.Start+1, SHA256Hex(f[r.Start:end+1])
		o.ContentRange = fmt.Sprintf("bytes %d-%d/%d", r.Start, end, len(f))
	}
	return o
}

// legal is a history that breaks no rule.
func legal() *History {
	create := func(ms int, key string, attempt, status int, j *Job) Op {
		return Op{Kind: OpCreate, Browser: 1, Key: key, Attempt: attempt, Start: at(ms), End: at(ms + 10), Status: status, Job: j}
	}
	h := &History{Seed: 1, Topology: TopologyB, Start: t0}
	h.Ops = []Op{
		// A: the first answer lost, the retry with the same key accepted.
		{Kind: OpCreate, Browser: 1, Key: "k1", Attempt: 1, Start: at(0), End: at(10), Err: "connection reset"},
		create(300, "k1", 2, 200, jp(job(codeA, StatusPending, 1, 0))),
		create(400, "k2", 1, 202, jp(job(codeB, StatusPending, 1, 0))),
		create(500, "k3", 1, 202, jp(job(codeC, StatusPending, 1, 0))),
		create(600, "k4", 1, 202, jp(job(codeD, StatusPending, 1, 0))),
		// Refusals make nothing; a 503 and a lost answer may each have made a job.
		{Kind: OpCreate, Browser: 1, Key: "k5", Attempt: 1, Start: at(700), End: at(710), Status: 429, ErrCode: "RATE_LIMITED"},
		{Kind: OpCreate, Browser: 1, Key: "k6", Attempt: 1, Start: at(800), End: at(810), Status: 503, ErrCode: "STORE_UNAVAILABLE"},
		{Kind: OpCreate, Browser: 1, Key: "k6", Attempt: 2, Start: at(900), End: at(910), Err: "EOF"},
		{Kind: OpGet, Browser: 1, Code: codeA, Start: at(1000), End: at(1010), Status: 200, Job: jp(job(codeA, StatusInProgress, 2, 50))},
		{Kind: OpGet, Browser: 1, Code: codeA, Start: at(1100), End: at(1110), Status: 200, Job: jp(job(codeA, StatusInProgress, 2, 50))},
		{Kind: OpCancel, Browser: 1, Code: codeC, Start: at(1200), End: at(1210), Status: 200, Job: jp(job(codeC, StatusCancelled, 2, 0))},
		{Kind: OpGet, Browser: 1, Code: codeD, Start: at(1300), End: at(1310), Status: 200, Job: jp(job(codeD, StatusCompleted, 3, 100))},
		{Kind: OpCancel, Browser: 1, Code: codeD, Start: at(1400), End: at(1410), Status: 204},
		// A file asked before it was ready; a download cut by a kill.
		{Kind: OpDownload, Browser: 1, Code: codeA, RowsTotal: rowsA, Start: at(1500), End: at(1510), Status: 409, ErrCode: "NOT_READY"},
		{Kind: OpDownload, Browser: 1, Code: codeA, RowsTotal: rowsA, Start: at(5000), End: at(5010), Status: 200, BodyLen: 17, BodySHA256: "x", Err: "unexpected EOF"},
		download(5100, OpDownload, codeA, &ByteRange{Start: 3, End: 40}),
		// After the faults.
		{Kind: OpFinalGet, Browser: 1, Code: codeA, Start: at(9000), End: at(9010), Status: 502, ErrCode: "BACKEND_UNAVAILABLE"},
		{Kind: OpFinalGet, Browser: 1, Code: codeA, Start: at(9500), End: at(9510), Status: 200, Job: jp(job(codeA, StatusCompleted, 4, 100))},
		{Kind: OpFinalGet, Browser: 1, Code: codeB, Start: at(9500), End: at(9510), Status: 200, Job: jp(job(codeB, StatusFailed, 3, 40))},
		{Kind: OpFinalGet, Browser: 1, Code: codeC, Start: at(9500), End: at(9510), Status: 200, Job: jp(job(codeC, StatusCancelled, 2, 0))},
		{Kind: OpFinalGet, Browser: 1, Code: codeD, Start: at(9500), End: at(9510), Status: 404, ErrCode: "NOT_FOUND"},
		{Kind: OpFinalList, Browser: 1, Start: at(9600), End: at(9610), Status: 200, Jobs: []Job{
			job(codeE, StatusCompleted, 4, 100), job(codeC, StatusCancelled, 2, 0), job(codeB, StatusFailed, 3, 40), job(codeA, StatusCompleted, 4, 100),
		}},
		download(9700, OpFinalDownload, codeA, nil),
		download(9800, OpFinalDownload, codeA, &ByteRange{Start: 100, End: 2000}), // past the end: clamped
	}
	h.Subs = []Subscriber{
		{ID: 1, Browser: 1, Kind: SubJob, Code: codeA, EndReason: EndTerminal, Conns: []Conn{
			{Start: at(320), Status: 200, EndReason: "eof", Events: []Event{ev(330, "1", job(codeA, StatusPending, 1, 0)), ev(900, "2", job(codeA, StatusInProgress, 2, 50))}},
			{Start: at(2000), LastEventID: "2", Status: 503},
			{Start: at(2500), LastEventID: "2", Err: "connection refused", EndReason: "error"},
			{Start: at(3000), LastEventID: "2", Status: 200, EndReason: "eof", Events: []Event{ev(4000, "4", job(codeA, StatusCompleted, 4, 100))}},
		}},
		// Left the job after one event: nothing is owed to it.
		{ID: 2, Browser: 1, Kind: SubJob, Code: codeA, EndReason: EndAbandoned, Conns: []Conn{
			{Start: at(320), Status: 200, EndReason: "closed", Events: []Event{ev(330, "1", job(codeA, StatusPending, 1, 0))}},
		}},
		// The BFF gave up on the backend: ERROR ends the stream.
		{ID: 3, Browser: 1, Kind: SubJob, Code: codeB, EndReason: EndErrorEvent, Conns: []Conn{
			{Start: at(420), Status: 200, EndReason: "closed", Events: []Event{ev(430, "1", job(codeB, StatusPending, 1, 0)), errorEvent(3000, codeB, "UPSTREAM_UNAVAILABLE")}},
		}},
		// The deleted job: 404 after the DELETE; the second asked before
		// the DELETE was sent and was answered after (held on a slow link).
		{ID: 4, Browser: 1, Kind: SubJob, Code: codeD, EndReason: EndNotFound, Conns: []Conn{{Start: at(1500), End: at(1501), Status: 404}}},
		{ID: 7, Browser: 1, Kind: SubJob, Code: codeD, EndReason: EndNotFound, Conns: []Conn{{Start: at(1350), End: at(1450), Status: 404}}},
		// Refused past the session's stream limit.
		{ID: 5, Browser: 1, Kind: SubJob, Code: codeC, EndReason: EndRefused, Conns: []Conn{{Start: at(520), Status: 429}}},
		// The tab: snapshots repeat after reconnects, never go back.
		{ID: 6, Browser: 1, Kind: SubMultiplex, EndReason: EndSatisfied, Conns: []Conn{
			{Start: at(100), Status: 200, EndReason: "eof", Events: []Event{
				ev(330, codeA+":1", job(codeA, StatusPending, 1, 0)), ev(900, codeA+":2", job(codeA, StatusInProgress, 2, 50)),
				ev(1205, codeC+":2", job(codeC, StatusCancelled, 2, 0)), ev(1290, codeD+":3", job(codeD, StatusCompleted, 3, 100)),
			}},
			{Start: at(2000), Status: 200, EndReason: "idle", Events: []Event{
				ev(2010, codeA+":2", job(codeA, StatusInProgress, 2, 50)), ev(2010, codeC+":2", job(codeC, StatusCancelled, 2, 0)),
				ev(2010, codeD+":3", job(codeD, StatusCompleted, 3, 100)), ev(3000, codeB+":3", job(codeB, StatusFailed, 3, 40)),
				ev(4000, codeA+":4", job(codeA, StatusCompleted, 4, 100)),
			}},
			{Start: at(8000), Status: 200, EndReason: "closed", Events: []Event{
				ev(8010, codeA+":4", job(codeA, StatusCompleted, 4, 100)), ev(8010, codeE+":4", job(codeE, StatusCompleted, 4, 100)),
				errorEvent(8020, codeB, "UPSTREAM_UNAVAILABLE"),
			}},
		}},
	}
	h.Procs = []ProcCheck{
		// Two more pooled connections: 2 fds and 4 goroutines more are allowed, and the slack.
		{Name: "backend-1", Survivor: true, Healed: true, Base: ProcSample{FDs: 10, Established: 1, Goroutines: 20},
			Final: ProcSample{FDs: 10 + 2 + LeakSlackFDs, Established: 3, Goroutines: 20 + 4 + LeakSlackGoroutines, Gauges: map[string]float64{"exportstream_backend_event_streams_active": 0}}},
		// Killed and restarted: not compared.
		{Name: "bff-1", Survivor: false, Healed: true, Base: ProcSample{FDs: 10, Goroutines: 10}, Final: ProcSample{FDs: 500, Goroutines: 900}},
	}
	return h
}

func rules(vs []Violation) []string {
	var out []string
	for _, v := range vs {
		out = append(out, v.Rule)
	}
	return out
}

func TestTheCheckerPassesALegalHistory(t *testing.T) {
	if vs := Check(legal()); len(vs) > 0 {
		for _, v := range vs {
			t.Error(v)
		}
	}
}

func findSub(h *History, id int) *Subscriber {
	for i := range h.Subs {
		if h.Subs[i].ID == id {
			return &h.Subs[i]
		}
	}
	panic("no subscriber")
}

func findOp(h *History, kind, code string, status int) *Op {
	for i := range h.Ops {
		if o := &h.Ops[i]; o.Kind == kind && o.Code == code && o.Status == status {
			return o
		}
	}
	panic("no op " + kind + " " + code)
}

func TestEachRuleFlagsTheHistoryThatBreaksIt(t *testing.T) {
	cases := []struct {
		rule    string
		breakIt func(h *History)
	}{
		{RuleIdemTwoJobs, func(h *History) {
			h.Ops = append(h.Ops, Op{Kind: OpCreate, Browser: 1, Key: "k2", Attempt: 2, Start: at(450), End: at(460), Status: 200, Job: jp(job(codeE, StatusPending, 1, 0))})
		}},
		{RuleIdemKeyReused, func(h *History) {
			h.Ops = append(h.Ops, Op{Kind: OpCreate, Browser: 1, Key: "k2", Attempt: 2, Start: at(450), End: at(460), Status: 409, ErrCode: "IDEMPOTENCY_KEY_REUSED"})
		}},
		{RuleIdemExtraJob, func(h *History) {
			l := findOp(h, OpFinalList, "", 200)
			l.Jobs = append(l.Jobs, job("ffffffff-0000-4000-8000-00000000000f", StatusCompleted, 4, 100))
		}},
		{RuleLostJob, func(h *History) {
			f := findOp(h, OpFinalGet, codeA, 200)
			f.Status, f.Job = 404, nil
		}},
		{RuleNotTerminal, func(h *History) { findOp(h, OpFinalGet, codeB, 200).Job = jp(job(codeB, StatusInProgress, 3, 40)) }},
		{RuleNotTerminal, func(h *History) { // an orphan still running
			findOp(h, OpFinalList, "", 200).Jobs[0] = job(codeE, StatusInProgress, 3, 30)
		}},
		{RuleFinalUnreachable, func(h *History) {
			f := findOp(h, OpFinalGet, codeB, 200)
			f.Status, f.Job = 503, nil
		}},
		{RuleTwoTerminalStates, func(h *History) {
			s := findSub(h, 6)
			s.Conns[2].Events = append(s.Conns[2].Events, ev(8100, codeA+":5", job(codeA, StatusFailed, 5, 100)))
		}},
		{RuleChangedAfterTerminal, func(h *History) {
			h.Ops = append(h.Ops, Op{Kind: OpGet, Browser: 1, Code: codeC, Start: at(1250), End: at(1260), Status: 200, Job: jp(job(codeC, StatusInProgress, 3, 10))})
		}},
		{RuleSeqConflict, func(h *History) {
			h.Ops = append(h.Ops, Op{Kind: OpGet, Browser: 1, Code: codeA, Start: at(1150), End: at(1160), Status: 200, Job: jp(job(codeA, StatusInProgress, 2, 60))})
		}},
		{RuleSeqRegress, func(h *History) { // read after the seq-2 answers, older
			h.Ops = append(h.Ops, Op{Kind: OpGet, Browser: 1, Code: codeA, Start: at(1200), End: at(1210), Status: 200, Job: jp(job(codeA, StatusPending, 1, 0))})
		}},
		{RuleSeqRegress, func(h *History) { // a cancel's answer is a write others must see
			h.Ops = append(h.Ops, Op{Kind: OpGet, Browser: 1, Code: codeC, Start: at(1300), End: at(1310), Status: 200, Job: jp(job(codeC, StatusPending, 1, 0))})
		}},
		{RuleAnnouncedFile, func(h *History) { findOp(h, OpFinalGet, codeA, 200).Job.File.SHA256 = strings.Repeat("0", 64) }},
		{RuleAnnouncedFile, func(h *History) { findOp(h, OpFinalGet, codeA, 200).Job.File.Size++ }},
		{RuleIDMismatch, func(h *History) { findSub(h, 1).Conns[0].Events[1].ID = "7" }},
		{RuleIDMismatch, func(h *History) { findSub(h, 6).Conns[0].Events[1].ID = "2" }},
		{RuleIDNotIncreasing, func(h *History) { // resumed from Last-Event-ID 2, got 2 again
			s := findSub(h, 1)
			s.Conns[3].Events = append([]Event{ev(3500, "2", job(codeA, StatusInProgress, 2, 50))}, s.Conns[3].Events...)
		}},
		{RuleIDNotIncreasing, func(h *History) {
			c := &findSub(h, 6).Conns[1]
			c.Events = append(c.Events, ev(4001, codeA+":2", job(codeA, StatusInProgress, 2, 50)))
		}},
		{RuleTerminalTwice, func(h *History) {
			s := findSub(h, 1)
			s.Conns = append(s.Conns, Conn{Start: at(4100), LastEventID: "4", Status: 200, Events: []Event{ev(4200, "4", job(codeA, StatusCompleted, 4, 100))}})
		}},
		{RuleTerminalTwice, func(h *History) { // the same snapshot twice on one /api/events connection
			c := &findSub(h, 6).Conns[1]
			c.Events = append(c.Events, ev(4001, codeA+":4", job(codeA, StatusCompleted, 4, 100)))
		}},
		{RuleEventAfterTerminal, func(h *History) {
			c := &findSub(h, 1).Conns[3]
			c.Events = append(c.Events, ev(4100, "5", job(codeA, StatusInProgress, 5, 90)))
		}},
		{RuleMissedTerminal, func(h *History) {
			s := findSub(h, 1)
			s.EndReason, s.Conns = EndDeadline, s.Conns[:3]
		}},
		{RuleMissedTerminal, func(h *History) { // the tab never got A's COMPLETED
			s := findSub(h, 6)
			s.EndReason = EndDeadline
			s.Conns[1].Events = s.Conns[1].Events[:4]
			s.Conns[2].Events = s.Conns[2].Events[1:]
		}},
		{RuleNoContentEarly, func(h *History) {
			s := findSub(h, 1)
			s.EndReason, s.Conns = EndNoContent, append(s.Conns[:1], Conn{Start: at(2000), LastEventID: "2", Status: 204})
		}},
		{RuleSpuriousNotFound, func(h *History) {
			s := findSub(h, 3)
			s.Conns[0].Events[1] = errorEvent(3000, codeB, "NOT_FOUND")
		}},
		{RuleSpuriousNotFound, func(h *History) { findSub(h, 4).Code = codeA }},
		{RuleSpuriousNotFound, func(h *History) { // 404 for the deleted job, answered before the DELETE was sent
			c := &findSub(h, 4).Conns[0]
			c.Start, c.End = at(1000), at(1010)
		}},
		{RuleOpenAfterTerminal, func(h *History) { findSub(h, 1).EndReason = EndTerminalOpen }},
		{RuleStreamRegress, func(h *History) {
			c := &findSub(h, 6).Conns[2]
			c.Events = append(c.Events, ev(8030, codeC+":1", job(codeC, StatusPending, 1, 0)))
		}},
		{RuleDownloadMismatch, func(h *History) { findOp(h, OpFinalDownload, codeA, 200).BodySHA256 = strings.Repeat("1", 64) }},
		{RuleDownloadMismatch, func(h *History) { findOp(h, OpDownload, codeA, 206).ContentRange = "bytes 3-40/999" }},
		{RuleDownloadMismatch, func(h *History) { findOp(h, OpDownload, codeA, 206).BodySHA256 = SHA256Hex([]byte("x")) }},
		{RuleFileMissing, func(h *History) {
			h.Ops = append(h.Ops, Op{Kind: OpDownload, Browser: 1, Code: codeA, RowsTotal: rowsA, Start: at(5200), End: at(5210), Status: 409, ErrCode: "NOT_READY"})
		}},
		{RuleFinalDownload, func(h *History) {
			h.Ops = slices.DeleteFunc(h.Ops, func(o Op) bool { return o.Kind == OpFinalDownload && o.Range != nil })
		}},
		{RuleNotHealed, func(h *History) { h.Procs[1].Healed, h.Procs[1].HealErr = false, "exited before it was ready" }},
		{RuleCrashed, func(h *History) { h.Procs[1].Crashes = []string{"exited by itself: exit status 2"} }},
		{RuleCrashed, func(h *History) { h.Procs[0].Panics = []string{"panic: runtime error: index out of range"} }},
		{RuleLeak, func(h *History) { h.Procs[0].Final.FDs++ }},
		{RuleLeak, func(h *History) { h.Procs[0].Final.Goroutines++ }},
		{RuleLeak, func(h *History) { h.Procs[0].Final.Gauges["exportstream_backend_event_streams_active"] = 1 }},
	}
	for _, c := range cases {
		t.Run(c.rule, func(t *testing.T) {
			h := legal()
			c.breakIt(h)
			got := rules(Check(h))
			if !slices.Contains(got, c.rule) {
				t.Errorf("want %s among the violations, got %v", c.rule, got)
			}
		})
	}
}

func TestTheScheduleIsTheSeeds(t *testing.T) {
	for _, topo := range []Topology{TopologyA, TopologyB} {
		a, b := Schedule(42, topo, 30*time.Second), Schedule(42, topo, 30*time.Second)
		if !slices.Equal(a, b) {
			t.Fatalf("topology %s: two schedules of seed 42 differ", topo)
		}
		if slices.Equal(a, Schedule(43, topo, 30*time.Second)) {
			t.Fatalf("topology %s: seeds 42 and 43 give one schedule", topo)
		}
		if len(a) < 8 {
			t.Errorf("topology %s: %d faults in 30 s, want 12 to 20", topo, len(a))
		}
		busy := map[string]time.Duration{}
		for _, f := range a {
			if f.At+f.Dur > 30*time.Second {
				t.Errorf("%s ends after the faults phase", f)
			}
			if f.At < busy[f.Target] {
				t.Errorf("%s overlaps an earlier fault on %s", f, f.Target)
			}
			busy[f.Target] = f.At + f.Dur
		}
	}
	kinds := map[string]bool{}
	for seed := range uint64(20) {
		for _, f := range Schedule(seed, ForSeed(seed), 30*time.Second) {
			kinds[f.Kind] = true
		}
	}
	for _, k := range FaultKinds {
		if !kinds[k] {
			t.Errorf("20 seeds never inject %s", k)
		}
	}
	if got := Keep(Schedule(42, TopologyA, 30*time.Second), []int{}); len(got) != 0 {
		t.Errorf("Keep(none) = %v", got)
	}
}

// The checker compares downloads, whole and ranged, with expectedFile's
// bytes and announced files with their digest: those bytes must be the file
// whose SHA-256 the backend announces (exportfile's tests pin that digest to
// the documented formula, as does this 3-row digest computed outside Go).
func TestExpectedFileIsTheAnnouncedFile(t *testing.T) {
	const code = "6f1c0b1e-4b7a-4c55-9c1e-3f0a8d2b7c11"
	if got, want := SHA256Hex(expectedFile(code, 3)), "ed8d5c41e90cf3e8e8a7b4f1c7418ff73505beb198fa9306e458a5457cb2e6bf"; got != want {
		t.Errorf("expectedFile(3 rows): SHA-256 %s, want the documented %s", got, want)
	}
	for _, rows := range []int{0, 1, 3, 5000} {
		f := expectedFile(code, rows)
		if got, want := SHA256Hex(f), exportfile.SHA256(code, rows); got != want {
			t.Errorf("expectedFile(%d rows): SHA-256 %s, the announced file's is %s", rows, got, want)
		}
		if n := strings.Count(string(f), "\n"); n != rows+1 || !strings.HasPrefix(string(f), exportfile.Header) {
			t.Errorf("expectedFile(%d rows): %d lines, header %t; want the header and %d rows", rows, n, strings.HasPrefix(string(f), exportfile.Header), rows)
		}
	}
}
