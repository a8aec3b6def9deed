package relay

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/exportstream/exportstream/internal/envelope"
)

// Event is one event of a job's stream as the backend sent it: its type,
// id and data are relayed unchanged, including the cases a browser tells
// apart (no id field vs an empty one, which resets lastEventId; no data
// field, which it does not dispatch). Seq and End are read from them.
type Event struct {
	Type    string // the event field; "" for an unnamed event ("message")
	ID      string
	HasID   bool // the event had an id field (ID "" then resets lastEventId)
	Data    string
	HasData bool  // the event had a data field
	Seq     int64 // ID as a number, 0 if it is not one
	End     bool  // the job's stream is over after this event
	// Cut: the browser streams that relay this event end after it (the
	// backend's envelope asked, for the dropStreamAt scenario); browsers
	// resume by Last-Event-ID. Only a live event cuts, never a replay.
	Cut bool
	// ErrCode is set on the relay's own ERROR events only.
	ErrCode string
}

var errBadEnvelope = errors.New("malformed event on the backend's stream")

// parseEnvelope reads one event of the backend's multiplexed stream.
func parseEnvelope(data string) (envelope.Envelope, error) {
	e, ok := scanEnvelope(data)
	if !ok {
		e = envelope.Envelope{}
		if err := json.Unmarshal([]byte(data), &e); err != nil {
			return envelope.Envelope{}, fmt.Errorf("%w: %w", errBadEnvelope, err)
		}
	}
	if e.Code == "" || e.Owner == "" {
		return envelope.Envelope{}, fmt.Errorf("%w: no owner or code", errBadEnvelope)
	}
	switch e.End {
	case "", envelope.EndDone, envelope.EndNotFound:
	default:
		return envelope.Envelope{}, fmt.Errorf("%w: unknown end %q", errBadEnvelope, e.End)
	}
	return e, nil
}

// scanEnvelope reads an envelope as the backend writes it — one flat JSON
// object of the six string fields, each at most once — without
// reflection: the upstream reader decodes every event, and encoding/json
// was a third of its time. ok is false for anything else (a null, a value
// that is not a string, a key it does not know or in other case, a \u
// escape, invalid UTF-8, bad JSON), which parseEnvelope leaves to
// encoding/json; where ok is true the two agree (FuzzScanEnvelope).
func scanEnvelope(s string) (e envelope.Envelope, ok bool) {
	i := skipSpace(s, 0)
	if i >= len(s) || s[i] != '{' {
		return e, false
	}
	i = skipSpace(s, i+1)
	if i < len(s) && s[i] == '}' {
		return e, skipSpace(s, i+1) == len(s)
	}
	var seen uint8
	for {
		key, j, ok := scanString(s, i)
		if !ok {
			return e, false
		}
		i = skipSpace(s, j)
		if i >= len(s) || s[i] != ':' {
			return e, false
		}
		val, j, ok := scanString(s, skipSpace(s, i+1))
		if !ok {
			return e, false
		}
		var bit uint8
		switch key {
		case "owner":
			e.Owner, bit = val, 1
		case "code":
			e.Code, bit = val, 2
		case "id":
			// Kept with the event (a topic's latest): a copy, not a
			// slice pinning the whole envelope.
			id := strings.Clone(val)
			e.ID, bit = &id, 4
		case "event":
			e.Event, bit = strings.Clone(val), 8
		case "data":
			e.Data, bit = &val, 16
		case "end":
			e.End, bit = val, 32
		default:
			return e, false
		}
		if seen&bit != 0 {
			return e, false // a repeated key: encoding/json's rules decide
		}
		seen |= bit
		i = skipSpace(s, j)
		switch {
		case i < len(s) && s[i] == '}':
			return e, skipSpace(s, i+1) == len(s)
		case i < len(s) && s[i] == ',':
			i = skipSpace(s, i+1)
		default:
			return e, false
		}
	}
}

// scanString reads the JSON string at s[i:], returning its value and the
// index after its closing quote; ok is false where scanEnvelope gives up.
func scanString(s string, i int) (string, int, bool) {
	if i >= len(s) || s[i] != '"' {
		return "", i, false
	}
	start := i + 1
	var b *strings.Builder // only once an escape is seen
	ascii := true
	for j := start; j < len(s); j++ {
		c := s[j]
		switch {
		case c == '"':
			if !ascii && !utf8.ValidString(s[start:j]) {
				return "", j, false
			}
			if b == nil {
				return s[start:j], j + 1, true
			}
			b.WriteString(s[start:j])
			return b.String(), j + 1, true
		case c < 0x20:
			return "", j, false
		case c >= utf8.RuneSelf:
			ascii = false
		case c == '\\':
			if j+1 >= len(s) {
				return "", j, false
			}
			var r byte
			switch s[j+1] {
			case '"', '\\', '/':
				r = s[j+1]
			case 'n':
				r = '\n'
			case 't':
				r = '\t'
			case 'r':
				r = '\r'
			case 'b':
				r = '\b'
			case 'f':
				r = '\f'
			default:
				return "", j, false // \u and anything else
			}
			if b == nil {
				b = &strings.Builder{}
				b.Grow(len(s) - start)
			}
			if !ascii && !utf8.ValidString(s[start:j]) {
				return "", j, false
			}
			b.WriteString(s[start:j])
			b.WriteByte(r)
			j++
			start, ascii = j+1, true
		}
	}
	return "", len(s), false
}

func skipSpace(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r') {
		i++
	}
	return i
}

// eventOf is the job event an envelope carries, if it carries one.
func eventOf(e envelope.Envelope) (Event, bool) {
	if e.ID == nil && e.Data == nil && e.Event == "" {
		return Event{}, false
	}
	ev := Event{Type: e.Event, End: e.End == envelope.EndDone, Cut: e.Cut}
	if e.ID != nil {
		ev.ID, ev.HasID = *e.ID, true
		ev.Seq, _ = strconv.ParseInt(ev.ID, 10, 64)
	}
	if e.Data != nil {
		ev.Data, ev.HasData = *e.Data, true
	}
	return ev, true
}

// errorEvent is what subscribers get when the relay cannot reach the truth:
// {"code":…,"status":"ERROR","error":{"code":…,"message":…}}. It ends the stream.
func errorEvent(code, errCode, message string) Event {
	type failure struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	b, _ := json.Marshal(struct {
		Code   string  `json:"code"`
		Status string  `json:"status"`
		Error  failure `json:"error"`
	}{code, "ERROR", failure{errCode, message}})
	return Event{Data: string(b), HasData: true, End: true, ErrCode: errCode}
}

// ErrorCode returns the error code of the relay's ERROR event, or "".
func (e Event) ErrorCode() string { return e.ErrCode }
