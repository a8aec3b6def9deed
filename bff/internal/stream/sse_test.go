package stream_test

import (
	"strings"
	"testing"

	sse "github.com/tmaxmax/go-sse"

	"github.com/exportstream/exportstream/bff/internal/stream"
)

func TestAppendEvent(t *testing.T) {
	for _, c := range []struct{ id, data, want string }{
		{"7", `{"seq":7}`, "id: 7\ndata: {\"seq\":7}\n\n"},
		{"", "error", "data: error\n\n"},
		{"a:1", "two\nlines", "id: a:1\ndata: two\ndata: lines\n\n"},
		{"1", "cr\rcrlf\r\nend", "id: 1\ndata: cr\ndata: crlf\ndata: end\n\n"},
		{"1", "", "id: 1\ndata: \n\n"},
		{"bad\nid", "x", "data: x\n\n"},
	} {
		if got := string(stream.AppendEvent(nil, c.id, c.data)); got != c.want {
			t.Errorf("AppendEvent(%q, %q) = %q, want %q", c.id, c.data, got, c.want)
		}
	}
}

// FuzzAppendEvent: whatever the id and data, an EventSource parser reads
// back exactly one event with that data, and the id unless it could not
// be framed.
func FuzzAppendEvent(f *testing.F) {
	f.Add("7", `{"seq":7}`)
	f.Add("", "a\r\nb\rc\n")
	f.Add("x\ny", "")
	f.Fuzz(func(t *testing.T, id, data string) {
		wire := stream.AppendEvent(nil, id, data)
		var got []sse.Event
		for ev, err := range sse.Read(strings.NewReader(string(wire)), nil) {
			if err != nil {
				t.Fatalf("parse %q: %v", wire, err)
			}
			got = append(got, ev)
		}
		wantData := strings.NewReplacer("\r\n", "\n", "\r", "\n").Replace(data)
		wantID := id
		if strings.ContainsAny(id, "\r\n\x00") {
			wantID = ""
		}
		if len(got) != 1 || got[0].Data != wantData || got[0].LastEventID != wantID {
			t.Fatalf("AppendEvent(%q, %q) = %q, parsed as %+v", id, data, wire, got)
		}
	})
}
