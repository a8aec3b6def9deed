package stream

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// AppendEvent appends one event with an id (unless id is empty) and data.
func AppendEvent(buf []byte, id, data string) []byte {
	return AppendFrame(buf, Frame{ID: id, HasID: id != "", Data: data, HasData: true})
}

// Frame is one event's fields as they go on the wire. A browser tells
// apart an event without an id field and one with an empty id (which
// resets its lastEventId), and does not dispatch one without data.
type Frame struct {
	Type    string
	ID      string
	HasID   bool
	Data    string
	HasData bool
}

// AppendFrame appends f in the text/event-stream format: one data line per
// line of data. A type or id that holds a line break (or an id with NUL,
// which a browser ignores) would end the framing, so it is left out.
func AppendFrame(buf []byte, f Frame) []byte {
	if !f.HasData && !f.HasID && f.Type == "" {
		return buf
	}
	if f.Type != "" && !strings.ContainsAny(f.Type, "\r\n") {
		buf = append(buf, "event: "...)
		buf = append(buf, f.Type...)
		buf = append(buf, '\n')
	}
	if f.HasID && !strings.ContainsAny(f.ID, "\r\n\x00") {
		buf = append(buf, "id: "...)
		buf = append(buf, f.ID...)
		buf = append(buf, '\n')
	}
	if f.HasData {
		data := f.Data
		for {
			i := strings.IndexAny(data, "\r\n")
			if i < 0 {
				break
			}
			buf = append(buf, "data: "...)
			buf = append(buf, data[:i]...)
			buf = append(buf, '\n')
			if data[i] == '\r' && i+1 < len(data) && data[i+1] == '\n' {
				i++
			}
			data = data[i+1:]
		}
		buf = append(buf, "data: "...)
		buf = append(buf, data...)
		buf = append(buf, '\n')
	}
	return append(buf, '\n')
}

// AppendPing appends a heartbeat comment.
func AppendPing(buf []byte) []byte { return append(buf, ping...) }

// Head is an event stream's response head: the status line, h (headers
// the middleware set) with the event-stream ones, and a retry field.
func Head(h http.Header, retry time.Duration) []byte {
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	h.Set("Connection", "close")     // the body ends when the connection does
	h.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	h.Del("Content-Length")
	var b strings.Builder
	b.WriteString("HTTP/1.1 200 OK\r\n")
	_ = h.Write(&b)
	b.WriteString("\r\nretry: ")
	b.WriteString(strconv.FormatInt(retry.Milliseconds(), 10))
	b.WriteString("\n\n")
	return []byte(b.String())
}
