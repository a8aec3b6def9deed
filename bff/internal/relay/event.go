package relay

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
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
	// ErrCode is set on the relay's own ERROR events only.
	ErrCode string
}

// envelope is one event of the backend's multiplexed stream
// (docs/multiplexed-stream.md): an event of owner's job code, or the end
// of that code's stream.
type envelope struct {
	Owner string  `json:"owner"`
	Code  string  `json:"code"`
	ID    *string `json:"id"`
	Event string  `json:"event"`
	Data  *string `json:"data"`
	End   string  `json:"end"`
}

// How a code's stream ends on the multiplexed stream.
const (
	endDone     = "done"      // after the job's last event, or nothing newer will come
	endNotFound = "not_found" // no such job for this owner, or it was deleted
)

var errBadEnvelope = errors.New("malformed event on the backend's stream")

// parseEnvelope reads one event of the backend's multiplexed stream.
func parseEnvelope(data string) (envelope, error) {
	var e envelope
	if err := json.Unmarshal([]byte(data), &e); err != nil {
		return envelope{}, fmt.Errorf("%w: %w", errBadEnvelope, err)
	}
	if e.Code == "" || e.Owner == "" {
		return envelope{}, fmt.Errorf("%w: no owner or code", errBadEnvelope)
	}
	switch e.End {
	case "", endDone, endNotFound:
	default:
		return envelope{}, fmt.Errorf("%w: unknown end %q", errBadEnvelope, e.End)
	}
	return e, nil
}

// event is the job event an envelope carries, if it carries one.
func (e envelope) event() (Event, bool) {
	if e.ID == nil && e.Data == nil && e.Event == "" {
		return Event{}, false
	}
	ev := Event{Type: e.Event, End: e.End == endDone}
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
