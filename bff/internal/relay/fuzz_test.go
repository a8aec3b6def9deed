package relay

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	sse "github.com/tmaxmax/go-sse"

	"github.com/exportstream/exportstream/bff/internal/relay/relaytest"
	"github.com/exportstream/exportstream/internal/envelope"
)

// fuzzSubscribers are the jobs FuzzUpstreamBytes follows: one code of two
// owners, and another code of the first.
var fuzzSubscribers = []topicKey{{"o1", "c1"}, {"o2", "c1"}, {"o1", "c2"}}

// sentEvents is what the backend's bytes address to each job: the events
// of the envelopes that name it, and whether one says it is not found.
// It reads the bytes as the hub does (go-sse, encoding/json), so it is no
// oracle of parsing, only of where each event may go.
func sentEvents(body string) (map[topicKey][]Event, map[topicKey]bool) {
	events, notFound := make(map[topicKey][]Event), make(map[topicKey]bool)
	for ev, err := range sse.Read(strings.NewReader(body), &sse.ReadConfig{MaxEventSize: 1 << 20}) {
		if err != nil {
			break
		}
		var e envelope.Envelope
		if ev.Type != "" || json.Unmarshal([]byte(ev.Data), &e) != nil {
			continue
		}
		k := topicKey{e.Owner, e.Code}
		if e.End == envelope.EndNotFound {
			notFound[k] = true
		}
		if jev, ok := eventOf(e); ok {
			events[k] = append(events[k], jev)
		}
	}
	return events, notFound
}

// FuzzUpstreamBytes: whatever bytes follow a valid `stream` event on the
// backend's stream, the hub neither crashes nor hangs, and a subscriber
// gets only events addressed to its own owner and code (or the relay's
// NOT_FOUND when the backend said so for it).
func FuzzUpstreamBytes(f *testing.F) {
	for _, seed := range []string{
		relaytest.Encode(relaytest.Snapshot("o1", "c1", 1, "IN_PROGRESS"), relaytest.Snapshot("o2", "c1", 2, "COMPLETED"), relaytest.Ended("o1", "c2", "not_found")),
		"data: {\"owner\":\"o1\",\"code\":\"c1\",\"id\":\"\",\"event\":\"x\",\"data\":\"\"}\r\n\r\n",
		"data: {\"owner\":\"o1\",\"code\":\"c1\",\"OWNER\":\"o2\",\"id\":null,\"data\":null,\"end\":\"done\"}\n\n",
		"data: {\"owner\":\"o1\",\"code\":\"c1\",\"end\":\"later\"}\n\ndata: [1,2]\n\ndata: \"s\"\n\n",
		"event: stream\ndata: {\"stream\":\"other\"}\n\n" + relaytest.Encode(relaytest.Snapshot("o1", "c2", 3, "IN_PROGRESS")),
		"event: stream\ndata: {}\n\n",
		"\ufeffdata\ndata: x\n\n", ": only a comment\n\n", "id: \x00\nretry: -1\n\n",
		"data: {\"owner\":\"o1\",\"code\":", "data: {\"owner\":\"o1\",\"code\":\"c1\",\"id\":\"99999999999999999999\",\"data\":\"y\"}\n\n",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, body string) {
		b, h := startHub(t, Config{Buffer: 1 << 12})
		subs := make(map[topicKey]*Subscription)
		for _, k := range fuzzSubscribers {
			subs[k] = h.Subscribe(k.owner, k.code, 0, nil)
		}
		sentinel := h.Subscribe("z", "sentinel", 0, nil)
		conn := b.NextStream(t)
		for range len(subs) + 1 {
			b.NextCall(t)
		}
		conn.Send(body)
		// A blank line ends whatever the body left open; then the
		// sentinel's end says the hub read all of it, unless the body
		// made it hang up.
		conn.Send("\n\n" + relaytest.Encode(relaytest.Ended("z", "sentinel", "done")))
		deadline := time.After(wait)
		for read := false; !read; {
			select {
			case <-sentinel.Ready():
				_, read = sentinel.Drain()
			case <-conn.Done():
				read = true
			case <-deadline:
				t.Fatal("the hub neither read the body nor hung up")
			}
		}
		h.Close()

		sent, notFound := sentEvents(body + "\n\n") // as the hub read it
		for k, s := range subs {
			evs, _ := s.Drain()
			for _, ev := range evs {
				if ev.ErrCode != "" {
					if ev.ErrCode != "NOT_FOUND" || !notFound[k] {
						t.Errorf("%v got ERROR %s: %+v", k, ev.ErrCode, ev)
					}
					continue
				}
				if !containsEvent(sent[k], ev) {
					t.Errorf("%v got an event not addressed to it: %+v", k, ev)
				}
			}
		}
	})
}

func containsEvent(evs []Event, ev Event) bool {
	for _, e := range evs {
		if e == ev {
			return true
		}
	}
	return false
}

// FuzzScanEnvelope: wherever the fast envelope reader accepts data,
// encoding/json reads the same envelope from it.
func FuzzScanEnvelope(f *testing.F) {
	for _, seed := range []string{
		`{"owner":"o1","code":"c1","id":"3","data":"{\"code\":\"c1\",\"status\":\"IN_PROGRESS\"}"}`,
		`{"owner":"o","code":"c","end":"not_found"}`, ` { "owner" : "o" , "code" : "c" , "id" : "" , "event" : "x" , "data" : "" } `,
		`{"owner":"o","code":"c","data":"a\nb\\c\/d\te\"f\rg\bh\fi"}`, `{"owner":"é","code":"c\u00e9"}`, `{"Owner":"o","code":"c"}`,
		`{"owner":"o","owner":"p","code":"c"}`, `{"owner":null,"code":"c"}`, `{"owner":"o","code":"c","extra":1}`, `{}`, `{"owner":"o",}`,
		"{\"owner\":\"\xff\",\"code\":\"c\"}", `{"owner":"o","code":"c"} x`, `[1]`, `"s"`,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data string) {
		fast, ok := scanEnvelope(data)
		if !ok {
			return
		}
		var want envelope.Envelope
		if err := json.Unmarshal([]byte(data), &want); err != nil {
			t.Fatalf("scanEnvelope accepted %q, encoding/json refuses it: %v", data, err)
		}
		if show(fast) != show(want) {
			t.Fatalf("%q: scanEnvelope %s, encoding/json %s", data, show(fast), show(want))
		}
	})
}

// show prints an envelope with its pointers' values (nil apart from "").
func show(e envelope.Envelope) string {
	deref := func(p *string) string {
		if p == nil {
			return "<nil>"
		}
		return strconv.Quote(*p)
	}
	return fmt.Sprintf("{owner %q code %q id %s event %q data %s end %q}", e.Owner, e.Code, deref(e.ID), e.Event, deref(e.Data), e.End)
}

// TestEnvelopesAsTheBackendWritesThemTakeTheFastPath: json.Marshal's
// envelopes (the backend's encoding), job JSON with quotes, line breaks
// and non-ASCII in its data, read without encoding/json.
func TestEnvelopesAsTheBackendWritesThemTakeTheFastPath(t *testing.T) {
	data := "{\"code\":\"c1\",\"status\":\"FAILED\",\"error\":{\"message\":\"a\\nb \\\"quoted\\\" é\"}}"
	for _, e := range []relaytest.Envelope{
		relaytest.Snapshot("o1", "c1", 7, "IN_PROGRESS"),
		relaytest.Snapshot("o1", "c1", 8, "COMPLETED"),
		relaytest.Ended("o1", "c2", "not_found"),
		{Owner: "o1", Code: "c1", ID: new(string), Event: "named", Data: &data},
	} {
		b, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := scanEnvelope(string(b))
		var want envelope.Envelope
		_ = json.Unmarshal(b, &want)
		if !ok || show(got) != show(want) {
			t.Errorf("%s: fast path %v, %s; want %s", b, ok, show(got), show(want))
		}
	}
}
