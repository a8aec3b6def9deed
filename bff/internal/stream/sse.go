package stream

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// AppendEvent appends one event in the text/event-stream format: an id
// line unless id is empty, and one data line per line of data. An id that
// holds a line break would end the framing, so it is left out.
func AppendEvent(buf []byte, id, data string) []byte {
	if id != "" && !strings.ContainsAny(id, "\r\n\x00") {
		buf = append(buf, "id: "...)
		buf = append(buf, id...)
		buf = append(buf, '\n')
	}
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
	return append(buf, "\n\n"...)
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
