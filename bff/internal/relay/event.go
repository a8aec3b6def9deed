package relay

import (
	"encoding/json"
	"strconv"
)

// Event is one job snapshot as the backend sent it. Data is relayed byte
// for byte and ID unchanged; Seq and End are read from them for routing.
type Event struct {
	ID   string // the upstream's id field; empty for the relay's own ERROR
	Seq  int64  // ID as a number, 0 if it is not one
	Data string // the job JSON
	End  bool   // a terminal status or ERROR: the stream ends after it
}

// newUpstreamEvent reads the routing facts out of a backend event.
func newUpstreamEvent(id, data string) Event {
	seq, _ := strconv.ParseInt(id, 10, 64)
	var head struct {
		Status string `json:"status"`
	}
	_ = json.Unmarshal([]byte(data), &head)
	switch head.Status {
	case "COMPLETED", "FAILED", "CANCELLED":
		return Event{ID: id, Seq: seq, Data: data, End: true}
	}
	return Event{ID: id, Seq: seq, Data: data}
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
	return Event{Data: string(b), End: true}
}

// ErrorCode returns the error code of an ERROR event, or "" for a snapshot.
func (e Event) ErrorCode() string {
	if e.ID != "" {
		return ""
	}
	var v struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	_ = json.Unmarshal([]byte(e.Data), &v)
	return v.Error.Code
}
