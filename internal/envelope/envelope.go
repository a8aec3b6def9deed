// Package envelope is the wire format of the multiplexed event stream
// (GET /v1/events, docs/multiplexed-stream.md): each event of a job's own
// stream travels as one unnamed SSE event whose data is an Envelope, the
// job's code with the event's fields and, when that code's stream is over,
// why.
//
// The backend writes it and the BFF reads it. It depends on nothing but
// the standard library, so that another service relaying the stream can
// copy this file as it is. The envelope is general, so such a relay can
// carry other job services' events as well: any event type, an id reset
// (""), an event without data.
package envelope

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// StreamEvent is the type of the stream's first event, whose data is an
// Opened: the id that the subscription calls name.
const StreamEvent = "stream"

// Opened is the data of the stream's first event.
type Opened struct {
	Stream string `json:"stream"`
}

// The values of End.
const (
	// EndDone: the code's stream is over after this envelope (it carries
	// the terminal snapshot, or nothing when the subscriber already has it).
	EndDone = "done"
	// EndNotFound: the code is unknown, malformed, another owner's or was
	// deleted. Such an envelope carries no event fields.
	EndNotFound = "not_found"
)

// Envelope is one event of one code's stream. ID and Data are pointers
// because absent and empty differ on the wire: no id field keeps the
// reader's last event id, an empty one resets it; an event without a data
// field is not dispatched, one with an empty data field is.
type Envelope struct {
	// Owner and Code name the subscription: subscriptions are per owner
	// and code, so two owners' calls for one code never share one (nor
	// does one replace the other's).
	Owner string `json:"owner"`
	Code  string `json:"code"`
	// ID is the event's id field; nil: the event had none.
	ID *string `json:"id,omitempty"`
	// Event is the event's type; empty for an unnamed event ("message").
	Event string `json:"event,omitempty"`
	// Data is the event's data (lines joined by "\n"); nil: it had none.
	Data *string `json:"data,omitempty"`
	// End is EndDone or EndNotFound on the code's last envelope, else empty.
	End string `json:"end,omitempty"`
	// Cut asks the subscriber to cut its own streams of the code after
	// this event, as the backend cuts its per-job streams (the
	// dropStreamAt scenario of demos and tests): its readers then resume
	// by Last-Event-ID.
	Cut bool `json:"cut,omitempty"`
}

// Snapshot is the envelope of a job snapshot as the backend sends it: the
// job's seq as id, its JSON as data, and EndDone when it is terminal.
func Snapshot(owner, code, id, data string, terminal bool) Envelope {
	e := Envelope{Owner: owner, Code: code, ID: &id, Data: &data}
	if terminal {
		e.End = EndDone
	}
	return e
}

// Ended is the envelope that ends owner's code's stream on its own (no event).
func Ended(owner, code, why string) Envelope { return Envelope{Owner: owner, Code: code, End: why} }

// ErrInvalid is wrapped by every error Encode and Decode return for an
// envelope that breaks the rules of Validate.
var ErrInvalid = errors.New("invalid envelope")

// Validate checks what a reader relies on: a code; an End it knows, with
// no event fields on EndNotFound; and fields an SSE writer can write back
// as they are: no line break in ID or Event, no NUL in ID (a reader ignores
// such an id), no carriage return in Data (a reader splits lines at it).
func (e Envelope) Validate() error {
	switch {
	case e.Code == "" || e.Owner == "":
		return fmt.Errorf("%w: no owner or code", ErrInvalid)
	case e.End != "" && e.End != EndDone && e.End != EndNotFound:
		return fmt.Errorf("%w: end %q is neither %q nor %q", ErrInvalid, e.End, EndDone, EndNotFound)
	case e.End == EndNotFound && (e.ID != nil || e.Event != "" || e.Data != nil):
		return fmt.Errorf("%w: a %q envelope carries an event", ErrInvalid, EndNotFound)
	case e.ID != nil && strings.ContainsAny(*e.ID, "\r\n\x00"):
		return fmt.Errorf("%w: id with a line break or NUL", ErrInvalid)
	case strings.ContainsAny(e.Event, "\r\n"):
		return fmt.Errorf("%w: event type with a line break", ErrInvalid)
	case e.Data != nil && strings.Contains(*e.Data, "\r"):
		return fmt.Errorf("%w: data with a carriage return", ErrInvalid)
	}
	return nil
}

// Encode returns e as the one-line JSON that is an SSE event's data.
func (e Envelope) Encode() ([]byte, error) {
	if err := e.Validate(); err != nil {
		return nil, err
	}
	b, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("encode envelope: %w", err)
	}
	return b, nil
}

// Decode reads an envelope from an event's data. Fields it does not know
// are ignored, so that later versions may add some.
func Decode(data []byte) (Envelope, error) {
	var e Envelope
	if err := json.Unmarshal(data, &e); err != nil {
		return Envelope{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if err := e.Validate(); err != nil {
		return Envelope{}, err
	}
	return e, nil
}
