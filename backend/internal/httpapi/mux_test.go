package httpapi_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	sse "github.com/tmaxmax/go-sse"

	"github.com/exportstream/exportstream/backend/internal/eventmux"
	"github.com/exportstream/exportstream/backend/internal/httpapi"
	"github.com/exportstream/exportstream/backend/internal/job"
	"github.com/exportstream/exportstream/backend/internal/store"
	"github.com/exportstream/exportstream/backend/internal/worker"
	"github.com/exportstream/exportstream/internal/envelope"
	"github.com/exportstream/exportstream/internal/testenv"
)

// muxStream is an open GET /v1/events, read by go-sse's reader in the
// background: its envelopes arrive on envs, every byte read is in raw.
type muxStream struct {
	id    string
	resp  *http.Response
	first string // the raw first line
	envs  chan envelope.Envelope
	ended chan struct{} // closed when the server ended the stream (or the test closed it)
	close func()

	raw testenv.LogBuffer // every byte read, for tests of the wire format
}

type muxOptions struct {
	header http.Header
	// gate, when set, holds the reader after the stream event until it is
	// closed: a reader that does not read.
	gate <-chan struct{}
	// client sends the request (default: http.DefaultClient).
	client *http.Client
}

// openMux opens a multiplexed stream on base and reads its first event.
func openMux(t *testing.T, base string, o muxOptions) *muxStream {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/events", nil)
	for k, v := range o.header {
		req.Header[k] = v
	}
	client := o.client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		cancel()
		t.Fatalf("GET /v1/events: %d %s", resp.StatusCode, b)
	}
	m := &muxStream{resp: resp, envs: make(chan envelope.Envelope, 1<<16), ended: make(chan struct{})}
	m.close = func() { cancel(); _ = resp.Body.Close() }
	t.Cleanup(m.close)
	br := bufio.NewReader(io.TeeReader(resp.Body, &m.raw))
	first, err := br.ReadString('\n')
	if err != nil {
		t.Fatalf("first line: %v", err)
	}
	m.first = first
	opened := make(chan error, 1)
	go func() {
		defer close(m.ended)
		defer close(m.envs)
		started := false
		for ev, err := range sse.Read(br, nil) {
			if err != nil {
				return
			}
			if !started {
				started = true
				var o envelope.Opened
				if ev.Type != envelope.StreamEvent || json.Unmarshal([]byte(ev.Data), &o) != nil {
					opened <- &unexpected{ev.Type, ev.Data}
					return
				}
				m.id = o.Stream
				opened <- nil
				continue
			}
			if ev.Type != "" || ev.LastEventID != "" {
				t.Errorf("envelope event with type %q, id %q: want neither", ev.Type, ev.LastEventID)
			}
			env, err := envelope.Decode([]byte(ev.Data))
			if err != nil {
				t.Errorf("envelope %q: %v", ev.Data, err)
				continue
			}
			m.envs <- env
			if o.gate != nil {
				<-o.gate
			}
		}
	}()
	select {
	case err := <-opened:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no stream event within 10 s")
	}
	if _, err := job.ParseCode(m.id); err != nil {
		t.Fatalf("stream id %q is not a UUID", m.id)
	}
	return m
}

type unexpected struct{ typ, data string }

func (u *unexpected) Error() string {
	return "first event: type " + strconv.Quote(u.typ) + " data " + u.data + ", want the stream event"
}

// next returns the next envelope, failing the test after 10 s.
func (m *muxStream) next(t *testing.T) envelope.Envelope {
	t.Helper()
	select {
	case env, ok := <-m.envs:
		if !ok {
			t.Fatal("the stream ended")
		}
		return env
	case <-time.After(10 * time.Second):
		t.Fatal("no envelope within 10 s")
	}
	return envelope.Envelope{}
}

// until returns the envelopes up to and including the first one that ok accepts.
func (m *muxStream) until(t *testing.T, ok func(envelope.Envelope) bool) []envelope.Envelope {
	t.Helper()
	var got []envelope.Envelope
	deadline := time.After(30 * time.Second)
	for {
		select {
		case env, open := <-m.envs:
			if !open {
				t.Fatalf("the stream ended after %d envelopes, before the awaited one", len(got))
			}
			got = append(got, env)
			if ok(env) {
				return got
			}
		case <-deadline:
			t.Fatalf("awaited envelope not there after 30 s (%d others)", len(got))
		}
	}
}

// quiet fails the test if an envelope arrives within 100 ms.
func (m *muxStream) quiet(t *testing.T, why string) {
	t.Helper()
	select {
	case env := <-m.envs:
		t.Fatalf("%s: got %s", why, show(env))
	case <-time.After(100 * time.Millisecond):
	}
}

func endOf(code string) func(envelope.Envelope) bool {
	return func(e envelope.Envelope) bool { return e.Code == code && e.End != "" }
}

func show(e envelope.Envelope) string { b, _ := json.Marshal(e); return string(b) }

// subscriptionCall sends PUT or DELETE …/subscriptions/{code}; lastID "" sends no Last-Event-ID.
func subscriptionCall(t *testing.T, method, base, stream, code, owner, lastID string, header http.Header) *http.Response {
	t.Helper()
	h := http.Header{"X-Export-Owner": {owner}}
	if lastID != "" {
		h.Set("Last-Event-ID", lastID)
	}
	for k, v := range header {
		h[k] = v
	}
	return call(t, method, base+"/v1/events/"+stream+"/subscriptions/"+code, "", h, nil)
}

func subscribe(t *testing.T, base, stream, code, owner string, after int64) {
	t.Helper()
	if r := subscriptionCall(t, "PUT", base, stream, code, owner, strconv.FormatInt(after, 10), nil); r.StatusCode != http.StatusNoContent {
		t.Fatalf("PUT %s from %d: %d, want 204", code, after, r.StatusCode)
	}
}

func unsubscribe(t *testing.T, base, stream, code, owner string) {
	t.Helper()
	if r := subscriptionCall(t, "DELETE", base, stream, code, owner, "", nil); r.StatusCode != http.StatusNoContent {
		t.Fatalf("DELETE %s: %d, want 204", code, r.StatusCode)
	}
}

// storedJob creates a job in st directly: the test moves it, no worker does.
func storedJob(t *testing.T, st store.Store, owner string) job.Job {
	t.Helper()
	j, _, err := st.Create(t.Context(), job.New(job.Request{Rows: 100}, owner, time.Now().UTC()), "")
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func progress(t *testing.T, st store.Store, code string, p int) job.Job {
	t.Helper()
	j, err := st.Update(t.Context(), code, func(j *job.Job) error {
		j.Status, j.Progress, j.RowsDone = job.StatusInProgress, p, p
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func cancelJob(t *testing.T, st store.Store, code string) job.Job {
	t.Helper()
	j, err := st.Update(t.Context(), code, func(j *job.Job) error { j.Status = job.StatusCancelled; return nil })
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func envID(t *testing.T, e envelope.Envelope) int64 {
	t.Helper()
	if e.ID == nil {
		t.Fatalf("envelope %s has no id", show(e))
	}
	n, err := strconv.ParseInt(*e.ID, 10, 64)
	if err != nil {
		t.Fatalf("envelope id %q is not a seq", *e.ID)
	}
	return n
}

func envJob(t *testing.T, e envelope.Envelope) job.Job {
	t.Helper()
	if e.Data == nil {
		t.Fatalf("envelope %s has no data", show(e))
	}
	var j job.Job
	if err := json.Unmarshal([]byte(*e.Data), &j); err != nil {
		t.Fatalf("envelope data %q: %v", *e.Data, err)
	}
	return j
}

// muxGoroutines counts the goroutines running eventmux code: streams'
// subscriptions while they read the store, and channel listeners.
func muxGoroutines() int {
	var b bytes.Buffer
	_ = pprof.Lookup("goroutine").WriteTo(&b, 2)
	n := 0
	for g := range strings.SplitSeq(b.String(), "\n\n") {
		if strings.Contains(g, "/internal/eventmux.") {
			n++
		}
	}
	return n
}

// eventually polls cond until it holds, or fails after 10 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after 10 s: not %s", what)
		}
	}
}

func withMux(cfg eventmux.Config) backendOption {
	return func(h *httpapi.Config, _ *worker.Config) {
		cfg.Store, cfg.Logger = h.Store, h.Logger
		h.Mux = eventmux.New(cfg)
	}
}

func TestAMultiplexedStreamCarriesASubscribedExportFromItsSnapshotToItsEnd(t *testing.T) {
	b := newBackend(t)
	m := openMux(t, b.url, muxOptions{header: http.Header{"X-Forwarded-Prefix": {"/api"}}})
	if m.first != "retry: 2000\n" {
		t.Errorf("first line %q, want the retry field", m.first)
	}
	if m.resp.Header.Get("Content-Type") != "text/event-stream" || m.resp.Header.Get("Cache-Control") != "no-cache" || m.resp.Header.Get("X-Accel-Buffering") != "no" {
		t.Errorf("headers %v, want those of an event stream", m.resp.Header)
	}
	if !strings.Contains(m.raw.String(), "event: stream\ndata: {\"stream\":\""+m.id+"\"}\n\n") {
		t.Errorf("the stream event is not as documented: %q", m.raw.String())
	}
	var j job.Job
	call(t, "POST", b.url+"/v1/exports", `{"rows":3000,"durationMs":600}`, owner("alice"), &j)
	subscribe(t, b.url, m.id, j.Code, "alice", 0)

	envs := m.until(t, endOf(j.Code))
	var last int64
	sawProgress := false
	for i, e := range envs {
		snap := envJob(t, e)
		if e.Code != j.Code || envID(t, e) != snap.Seq || e.Event != "" {
			t.Errorf("envelope %d: %s; want code %s, id = seq, no event type", i, show(e), j.Code)
		}
		if snap.Seq <= last {
			t.Errorf("envelope %d: seq %d after %d", i, snap.Seq, last)
		}
		last = snap.Seq
		sawProgress = sawProgress || snap.Status == job.StatusInProgress && snap.Progress > 0 && snap.Progress < 100
		if (e.End != "") != (i == len(envs)-1) {
			t.Errorf("envelope %d: end %q", i, e.End)
		}
	}
	end := envs[len(envs)-1]
	done := envJob(t, end)
	if end.End != envelope.EndDone || done.Status != job.StatusCompleted || done.File == nil || done.File.URL != "/api/exports/"+j.Code+"/file" {
		t.Fatalf("last envelope %s: want end done with the COMPLETED snapshot, file under /api", show(end))
	}
	if !sawProgress {
		t.Error("no progress snapshot between the first and the last")
	}
	// The data is the per-job stream's, byte for byte.
	_, _, perJob := readRawEvents(t, b.url+"/v1/exports/"+j.Code+"/events", http.Header{
		"X-Export-Owner": {"alice"}, "X-Forwarded-Prefix": {"/api"}, "Last-Event-ID": {strconv.FormatInt(done.Seq-1, 10)},
	})
	if len(perJob) != 1 || perJob[0] != *end.Data {
		t.Errorf("per-job stream's last data %q\nmultiplexed %q", perJob, *end.Data)
	}
}

// readRawEvents reads a per-job stream to its end and returns its events' data.
func readRawEvents(t *testing.T, url string, header http.Header) (*http.Response, string, []string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	req.Header = header
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	br := bufio.NewReader(resp.Body)
	first, _ := br.ReadString('\n')
	var data []string
	for ev, err := range sse.Read(br, nil) {
		if err != nil {
			t.Fatal(err)
		}
		data = append(data, ev.Data)
	}
	return resp, first, data
}

func TestSubscribingAtTheLastSeqOfAnEndedJobGetsTheEndAlone(t *testing.T) {
	b := newBackend(t)
	j := storedJob(t, b.store, "alice")
	progress(t, b.store, j.Code, 50)
	ended := cancelJob(t, b.store, j.Code)
	m := openMux(t, b.url, muxOptions{})

	subscribe(t, b.url, m.id, j.Code, "alice", ended.Seq)
	if e := m.next(t); e.Code != j.Code || e.End != envelope.EndDone || e.ID != nil || e.Data != nil || e.Event != "" {
		t.Errorf("at the last seq: %s; want the end alone, no id, no data", show(e))
	}
	subscribe(t, b.url, m.id, j.Code, "alice", ended.Seq+5)
	if e := m.next(t); e.End != envelope.EndDone || e.Data != nil {
		t.Errorf("past the last seq: %s; want the end alone", show(e))
	}
	subscribe(t, b.url, m.id, j.Code, "alice", ended.Seq-1)
	if e := m.next(t); e.End != envelope.EndDone || envID(t, e) != ended.Seq || envJob(t, e).Status != job.StatusCancelled {
		t.Errorf("one before the last seq: %s; want the terminal snapshot with the end", show(e))
	}
	// A Last-Event-ID that is not a seq counts as none, as on the per-job stream.
	if r := subscriptionCall(t, "PUT", b.url, m.id, j.Code, "alice", "seven", nil); r.StatusCode != http.StatusNoContent {
		t.Fatalf("PUT with a malformed Last-Event-ID: %d", r.StatusCode)
	}
	if e := m.next(t); envID(t, e) != ended.Seq || e.End != envelope.EndDone {
		t.Errorf("malformed Last-Event-ID: %s; want the terminal snapshot", show(e))
	}
	m.quiet(t, "after an end the subscription is gone")
}

func TestSubscribingAgainReplacesTheSubscriptionWithTheNewSeq(t *testing.T) {
	b := newBackend(t)
	j := storedJob(t, b.store, "alice")
	now := progress(t, b.store, j.Code, 10)
	m := openMux(t, b.url, muxOptions{})

	subscribe(t, b.url, m.id, j.Code, "alice", 0)
	if e := m.next(t); envID(t, e) != now.Seq || e.End != "" {
		t.Fatalf("first: %s; want the current snapshot %d", show(e), now.Seq)
	}
	subscribe(t, b.url, m.id, j.Code, "alice", now.Seq) // has it: nothing until a change
	m.quiet(t, "a subscription from the current seq")
	subscribe(t, b.url, m.id, j.Code, "alice", 0) // from scratch: the snapshot again
	if e := m.next(t); envID(t, e) != now.Seq {
		t.Fatalf("again from 0: %s; want the current snapshot %d once more", show(e), now.Seq)
	}
	if n := b.api.Mux.Subscriptions(); n != 1 {
		t.Errorf("%d subscriptions after three PUTs of one code, want 1", n)
	}
	eventually(t, "one watch in the store and no goroutine: the replaced subscriptions' have ended", func() bool {
		return b.store.watching() == 1 && muxGoroutines() == 0
	})
	next := progress(t, b.store, j.Code, 20)
	if e := m.next(t); envID(t, e) != next.Seq {
		t.Errorf("after a change: %s, want %d", show(e), next.Seq)
	}
	m.quiet(t, "the replaced subscriptions are gone")
}

func TestUnsubscribingStopsOneCodesEventsWhileAnothersGoOn(t *testing.T) {
	b := newBackend(t)
	gone, kept := storedJob(t, b.store, "alice"), storedJob(t, b.store, "alice")
	m := openMux(t, b.url, muxOptions{})
	subscribe(t, b.url, m.id, gone.Code, "alice", 0)
	subscribe(t, b.url, m.id, kept.Code, "alice", 0)
	seen := map[string]bool{}
	m.until(t, func(e envelope.Envelope) bool { seen[e.Code] = true; return len(seen) == 2 })

	unsubscribe(t, b.url, m.id, gone.Code, "alice")
	unsubscribe(t, b.url, m.id, storedJob(t, b.store, "alice").Code, "alice") // never subscribed: 204 too
	eventually(t, "one watch in the store and no goroutine: the unsubscribed code's has ended", func() bool {
		return b.store.watching() == 1 && muxGoroutines() == 0
	})
	var envs []envelope.Envelope
	for p := 1; p <= 5; p++ {
		progress(t, b.store, gone.Code, p)
		want := progress(t, b.store, kept.Code, p).Seq
		envs = append(envs, m.until(t, func(e envelope.Envelope) bool { return e.Code == kept.Code && envID(t, e) == want })...)
	}
	cancelJob(t, b.store, gone.Code)
	cancelJob(t, b.store, kept.Code)
	envs = append(envs, m.until(t, endOf(kept.Code))...)
	for _, e := range envs {
		if e.Code == gone.Code {
			t.Errorf("after its DELETE: %s", show(e))
		}
	}
	m.quiet(t, "nothing of the unsubscribed code")
	if n := b.api.Mux.Subscriptions(); n != 0 {
		t.Errorf("%d subscriptions left, want 0", n)
	}
}

func TestAnotherOwnersUnknownOrMalformedCodeEndsNotFoundWithNoneOfItsData(t *testing.T) {
	b := newBackend(t)
	var secret job.Job
	call(t, "POST", b.url+"/v1/exports", `{"rows":7654,"durationMs":0,"filename":"alice-secret-report"}`, owner("alice"), &secret)
	last(follow(t, b.url+"/v1/exports/"+secret.Code+"/events", owner("alice")))
	m := openMux(t, b.url, muxOptions{})

	unknown := job.New(job.Request{Rows: 1}, "", time.Now()).Code
	for _, code := range []string{secret.Code, strings.ToUpper(secret.Code), unknown, "not-a-code", strings.Repeat("x", 128)} {
		subscribe(t, b.url, m.id, code, "mallory", 0)
		if e := m.next(t); e.Code != code || e.End != envelope.EndNotFound || e.ID != nil || e.Data != nil || e.Event != "" {
			t.Errorf("%s as mallory: %s; want end not_found and nothing else", code, show(e))
		}
	}
	for _, leak := range []string{"alice-secret", "7654", "rowsTotal", "COMPLETED", "sha256"} {
		if strings.Contains(m.raw.String(), leak) {
			t.Errorf("the stream carries %q of alice's export:\n%s", leak, m.raw.String())
		}
	}
	// Alice herself gets it, on the same stream.
	subscribe(t, b.url, m.id, secret.Code, "alice", 0)
	if e := m.next(t); e.End != envelope.EndDone || envJob(t, e).File == nil {
		t.Errorf("as alice: %s; want the COMPLETED snapshot", show(e))
	}
	var e struct{ Error struct{ Code string } }
	r := call(t, "PUT", b.url+"/v1/events/"+m.id+"/subscriptions/"+strings.Repeat("x", 129), "", owner("mallory"), &e)
	if r.StatusCode != http.StatusBadRequest || e.Error.Code != "INVALID_CODE" {
		t.Errorf("a code over 128 bytes: %d %s, want 400 INVALID_CODE", r.StatusCode, e.Error.Code)
	}
}

// aliceSubscribed starts a backend with a job of alice's and opens a
// stream with alice subscribed to it from the start; the stream's first
// envelope is not read yet.
func aliceSubscribed(t *testing.T) (*testBackend, job.Job, *muxStream) {
	t.Helper()
	b := newBackend(t)
	j := storedJob(t, b.store, "alice")
	m := openMux(t, b.url, muxOptions{})
	subscribe(t, b.url, m.id, j.Code, "alice", 0)
	return b, j, m
}

// Subscriptions are per owner and code: another owner subscribing (or
// unsubscribing) the same code on the same stream neither replaces nor
// ends the owner's, and every envelope says whose it is.
func TestAnotherOwnersCallForTheSameCodeLeavesTheOwnersSubscriptionAlone(t *testing.T) {
	b, j, m := aliceSubscribed(t)
	if e := m.next(t); e.Owner != "alice" || envID(t, e) != 1 {
		t.Fatalf("alice's first: %s", show(e))
	}
	subscribe(t, b.url, m.id, j.Code, "mallory", 0)
	if e := m.next(t); e.Owner != "mallory" || e.End != envelope.EndNotFound || e.Data != nil {
		t.Fatalf("mallory's: %s; want mallory's not_found", show(e))
	}
	unsubscribe(t, b.url, m.id, j.Code, "mallory")
	moved := progress(t, b.store, j.Code, 10)
	if e := m.next(t); e.Owner != "alice" || envID(t, e) != moved.Seq {
		t.Fatalf("after mallory's calls: %s; want alice's seq %d", show(e), moved.Seq)
	}
	var e struct{ Error struct{ Code string } }
	if r := call(t, "PUT", b.url+"/v1/events/"+m.id+"/subscriptions/"+j.Code, "", nil, &e); r.StatusCode != http.StatusBadRequest || e.Error.Code != "INVALID_OWNER" {
		t.Errorf("a subscription without an owner: %d %s, want 400 INVALID_OWNER", r.StatusCode, e.Error.Code)
	}
}

func TestAJobDeletedWhileSubscribedEndsNotFound(t *testing.T) {
	b, j, m := aliceSubscribed(t)
	if e := m.next(t); envID(t, e) != 1 {
		t.Fatalf("first: %s", show(e))
	}
	if err := b.store.Delete(t.Context(), j.Code); err != nil {
		t.Fatal(err)
	}
	if e := m.next(t); e.Code != j.Code || e.End != envelope.EndNotFound || e.Data != nil {
		t.Errorf("after the delete: %s; want end not_found", show(e))
	}
}

func TestSubscriptionCallsForAStreamThatIsNotOpenAre404(t *testing.T) {
	b, j, m := aliceSubscribed(t)
	m.close()
	eventually(t, "the stream closed", func() bool { return b.api.Mux.Streams() == 0 })

	for _, stream := range []string{job.New(job.Request{Rows: 1}, "", time.Now()).Code, "nope", m.id} {
		for _, method := range []string{"PUT", "DELETE"} {
			var e struct {
				Error struct{ Code, Message string }
			}
			r := call(t, method, b.url+"/v1/events/"+stream+"/subscriptions/"+j.Code, "", owner("alice"), &e)
			if r.StatusCode != http.StatusNotFound || e.Error.Code != "STREAM_NOT_FOUND" || e.Error.Message == "" || r.Header.Get("Content-Type") != "application/json; charset=utf-8" {
				t.Errorf("%s on stream %s: %d %+v; want 404 STREAM_NOT_FOUND JSON", method, stream, r.StatusCode, e.Error)
			}
		}
	}
	eventually(t, "no eventmux goroutine and no watch left", func() bool { return muxGoroutines() == 0 && b.store.watching() == 0 })
	if n := b.api.Mux.Subscriptions(); n != 0 {
		t.Errorf("%d subscriptions left after the stream closed", n)
	}
}

func TestAStreamPastItsSubscriptionBoundAnswers429(t *testing.T) {
	b := newBackend(t, withMux(eventmux.Config{MaxSubscriptions: 2}))
	m := openMux(t, b.url, muxOptions{})
	one, two, three := storedJob(t, b.store, "o"), storedJob(t, b.store, "o"), storedJob(t, b.store, "o")
	subscribe(t, b.url, m.id, one.Code, "o", 0)
	subscribe(t, b.url, m.id, two.Code, "o", 0)
	var e struct{ Error struct{ Code string } }
	r := call(t, "PUT", b.url+"/v1/events/"+m.id+"/subscriptions/"+three.Code, "", owner("o"), &e)
	if r.StatusCode != http.StatusTooManyRequests || e.Error.Code != "TOO_MANY_SUBSCRIPTIONS" || r.Header.Get("Retry-After") == "" {
		t.Fatalf("a third subscription: %d %s; want 429 TOO_MANY_SUBSCRIPTIONS with Retry-After", r.StatusCode, e.Error.Code)
	}
	subscribe(t, b.url, m.id, two.Code, "o", 1) // replacing one is no new one
	unsubscribe(t, b.url, m.id, one.Code, "o")
	subscribe(t, b.url, m.id, three.Code, "o", 0)
	seen := map[string]bool{}
	m.until(t, func(e envelope.Envelope) bool { seen[e.Code] = true; return seen[three.Code] })
	// A subscription that ended frees its place once its end is written.
	cancelJob(t, b.store, two.Code)
	m.until(t, endOf(two.Code))
	subscribe(t, b.url, m.id, one.Code, "o", 0)
}

func TestTheMultiplexedStreamNeedsTheServiceToken(t *testing.T) {
	b := newBackend(t, func(h *httpapi.Config, _ *worker.Config) { h.ServiceToken = "s3cret" })
	code := job.New(job.Request{Rows: 1}, "", time.Now()).Code
	for _, r := range []*http.Response{
		call(t, "GET", b.url+"/v1/events", "", nil, nil),
		call(t, "PUT", b.url+"/v1/events/"+code+"/subscriptions/"+code, "", nil, nil),
		call(t, "DELETE", b.url+"/v1/events/"+code+"/subscriptions/"+code, "", http.Header{"Authorization": {"Bearer guess"}}, nil),
	} {
		if r.StatusCode != http.StatusUnauthorized || r.Header.Get("WWW-Authenticate") == "" {
			t.Errorf("%s %s without the token: %d, want 401 with a challenge", r.Request.Method, r.Request.URL.Path, r.StatusCode)
		}
	}
	token := http.Header{"Authorization": {"Bearer s3cret"}}
	m := openMux(t, b.url, muxOptions{header: token})
	if r := subscriptionCall(t, "PUT", b.url, m.id, code, "o", "", token); r.StatusCode != http.StatusNoContent {
		t.Errorf("PUT with the token: %d, want 204", r.StatusCode)
	}
}

func TestAQuietMultiplexedStreamGetsHeartbeats(t *testing.T) {
	b := newBackend(t, func(h *httpapi.Config, _ *worker.Config) { h.Heartbeat = 50 * time.Millisecond })
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second) // no heartbeat: fail, not hang
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, b.url+"/v1/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	lines := bufio.NewScanner(resp.Body)
	var head []string
	pings := 0
	for pings < 2 && lines.Scan() {
		if lines.Text() == ": ping" {
			pings++
		} else if pings == 0 {
			head = append(head, lines.Text())
		}
	}
	if pings < 2 {
		t.Fatalf("stream ended after %d heartbeats: %v", pings, lines.Err())
	}
	if len(head) < 4 || !strings.HasPrefix(head[0], "retry: ") || head[2] != "event: stream" || !strings.HasPrefix(head[3], `data: {"stream":"`) {
		t.Errorf("before the heartbeats: %q; want retry, then the stream event", head)
	}
}

// smallWindow dials with a tiny receive buffer, so that a reader that does
// not read holds the server's writes back at once.
var smallWindow = &http.Client{Transport: &http.Transport{DialContext: (&net.Dialer{
	Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		if err != nil {
			return err
		}
		return serr
	},
}).DialContext}}

func TestASlowReaderSkipsProgressButGetsEveryEndWithOneEventPendingPerCodeAtMost(t *testing.T) {
	b := newBackend(t)
	const codes, changes = 4, 2000
	gate := make(chan struct{})
	m := openMux(t, b.url, muxOptions{gate: gate, client: smallWindow})
	jobs := make([]job.Job, codes)
	for i := range jobs {
		jobs[i] = storedJob(t, b.store, "o")
		subscribe(t, b.url, m.id, jobs[i].Code, "o", 0)
	}
	maxPending := 0
	for p := range changes {
		for _, j := range jobs {
			progress(t, b.store, j.Code, p%100)
		}
		maxPending = max(maxPending, b.api.Mux.Pending())
	}
	ends := map[string]int64{}
	for _, j := range jobs {
		ends[j.Code] = cancelJob(t, b.store, j.Code).Seq
	}
	eventually(t, "every end pending or written", func() bool { return b.api.Mux.Subscriptions() == 0 })
	maxPending = max(maxPending, b.api.Mux.Pending())
	if maxPending > codes {
		t.Errorf("%d events pending at once for %d subscriptions: the pending set is not bounded by them", maxPending, codes)
	}
	close(gate) // the reader reads again

	got, done := map[string][]int64{}, map[string]bool{}
	m.until(t, func(e envelope.Envelope) bool {
		got[e.Code] = append(got[e.Code], envID(t, e))
		if e.End != "" {
			done[e.Code] = true
			if envID(t, e) != ends[e.Code] || e.End != envelope.EndDone {
				t.Errorf("%s ended %s at %d, want done at its terminal seq %d", e.Code, e.End, envID(t, e), ends[e.Code])
			}
		}
		return len(done) == codes
	})
	m.quiet(t, "after every end")
	total := 0
	for code, ids := range got {
		total += len(ids)
		for i := 1; i < len(ids); i++ {
			if ids[i] <= ids[i-1] {
				t.Errorf("%s: id %d after %d", code, ids[i], ids[i-1])
			}
		}
	}
	if total >= codes*(changes+1) {
		t.Errorf("%d events for %d changes: the slow reader skipped nothing", total, codes*(changes+1))
	}
	t.Logf("%d changes of %d codes reached the slow reader as %d events; at most %d pending", codes*(changes+1), codes, total, maxPending)
}

func TestDrainingEndsMultiplexedStreamsAndRefusesNewOnes(t *testing.T) {
	b := newBackend(t)
	m := openMux(t, b.url, muxOptions{})
	subscribe(t, b.url, m.id, storedJob(t, b.store, "o").Code, "o", 0)
	m.next(t)
	b.api.CloseStreams()
	select {
	case <-m.ended:
	case <-time.After(10 * time.Second):
		t.Fatal("the stream is still open 10 s after CloseStreams")
	}
	var e struct{ Error struct{ Code string } }
	if r := call(t, "GET", b.url+"/v1/events", "", nil, &e); r.StatusCode != http.StatusServiceUnavailable || e.Error.Code != "UNAVAILABLE" {
		t.Errorf("a new stream while draining: %d %s, want 503 UNAVAILABLE", r.StatusCode, e.Error.Code)
	}
	eventually(t, "no eventmux goroutine left", func() bool { return muxGoroutines() == 0 })
}

func TestMetricsCountMultiplexedStreamsAndSubscriptions(t *testing.T) {
	b := newBackend(t)
	m := openMux(t, b.url, muxOptions{})
	for range 3 {
		subscribe(t, b.url, m.id, storedJob(t, b.store, "o").Code, "o", 0)
	}
	resp, err := http.Get(b.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	text, _ := io.ReadAll(resp.Body)
	for _, want := range []string{
		"exportstream_backend_mux_streams_open 1",
		"exportstream_backend_mux_subscriptions_active 3",
		"exportstream_backend_mux_pending_events",
	} {
		if !strings.Contains(string(text), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}
