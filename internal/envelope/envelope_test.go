package envelope_test

import (
	"bytes"
	"errors"
	"reflect"
	"testing"

	"github.com/exportstream/exportstream/internal/envelope"
)

const code = "6f1c0b1e-4b7a-4c55-9c1e-3f0a8d2b7c11"

func str(s string) *string { return &s }

func TestTheBackendsEnvelopesAreTheDocumentedBytes(t *testing.T) {
	tests := []struct {
		name string
		env  envelope.Envelope
		want string
	}{
		{"a snapshot", envelope.Snapshot("o1", code, "7", `{"seq":7}`, false),
			`{"owner":"o1","code":"` + code + `","id":"7","data":"{\"seq\":7}"}`},
		{"a terminal snapshot", envelope.Snapshot("o1", code, "9", `{"seq":9}`, true),
			`{"owner":"o1","code":"` + code + `","id":"9","data":"{\"seq\":9}","end":"done"}`},
		{"the end alone", envelope.Ended("o1", code, envelope.EndDone), `{"owner":"o1","code":"` + code + `","end":"done"}`},
		{"a snapshot that cuts", envelope.Envelope{Owner: "o1", Code: code, ID: str("4"), Data: str(`{"seq":4}`), Cut: true},
			`{"owner":"o1","code":"` + code + `","id":"4","data":"{\"seq\":4}","cut":true}`},
		{"not found", envelope.Ended("o1", "nope", envelope.EndNotFound), `{"owner":"o1","code":"nope","end":"not_found"}`},
		{"another service's named event with an id reset and empty data", envelope.Envelope{Owner: "o", Code: "c", ID: str(""), Event: "note", Data: str("")},
			`{"owner":"o","code":"c","id":"","event":"note","data":""}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.env.Encode()
			if err != nil || string(got) != tt.want {
				t.Fatalf("Encode = %s, %v; want %s", got, err, tt.want)
			}
			back, err := envelope.Decode(got)
			if err != nil || !reflect.DeepEqual(back, tt.env) {
				t.Errorf("Decode = %+v, %v; want %+v", back, err, tt.env)
			}
		})
	}
}

func TestAbsentAndEmptyFieldsStayApart(t *testing.T) {
	absent, err := envelope.Decode([]byte(`{"owner":"o","code":"c"}`))
	if err != nil || absent.ID != nil || absent.Data != nil {
		t.Errorf("no id, no data: %+v %v", absent, err)
	}
	empty, err := envelope.Decode([]byte(`{"owner":"o","code":"c","id":"","data":""}`))
	if err != nil || empty.ID == nil || *empty.ID != "" || empty.Data == nil || *empty.Data != "" {
		t.Errorf("empty id and data: %+v %v", empty, err)
	}
	multi, err := envelope.Decode([]byte(`{"owner":"o","code":"c","data":"a\nb","future":1}`))
	if err != nil || *multi.Data != "a\nb" {
		t.Errorf("two data lines and an unknown field: %+v %v", multi, err)
	}
}

func TestInvalidEnvelopesAreRefused(t *testing.T) {
	for name, in := range map[string]string{
		"not JSON":                       `{"owner":"o","code":`,
		"not an object":                  `["c"]`,
		"null":                           `null`,
		"no code":                        `{"id":"1","data":"x"}`,
		"an empty code":                  `{"owner":"o","code":""}`,
		"no owner":                       `{"code":"c"}`,
		"a code that is not a string":    `{"owner":"o","code":7}`,
		"an unknown end":                 `{"owner":"o","code":"c","end":"gone"}`,
		"not_found with data":            `{"owner":"o","code":"c","end":"not_found","data":"{\"owner\":\"alice\"}"}`,
		"not_found with an id":           `{"owner":"o","code":"c","end":"not_found","id":"3"}`,
		"an id with a line break":        `{"owner":"o","code":"c","id":"1\nretry: 1"}`,
		"an id with NUL":                 `{"owner":"o","code":"c","id":"1\u0000"}`,
		"an event type with a line feed": `{"owner":"o","code":"c","event":"a\ndata: x"}`,
		"data with a carriage return":    `{"owner":"o","code":"c","data":"a\rb"}`,
	} {
		t.Run(name, func(t *testing.T) {
			if e, err := envelope.Decode([]byte(in)); !errors.Is(err, envelope.ErrInvalid) {
				t.Errorf("Decode(%s) = %+v, %v; want ErrInvalid", in, e, err)
			}
		})
	}
	if _, err := (envelope.Envelope{Owner: "o", Code: "c", End: envelope.EndNotFound, Data: str("secret")}).Encode(); !errors.Is(err, envelope.ErrInvalid) {
		t.Errorf("Encode of not_found with data: %v, want ErrInvalid", err)
	}
}

// FuzzDecode: whatever bytes arrive, Decode refuses them with ErrInvalid
// or returns an envelope that encodes to one line and decodes back to itself.
func FuzzDecode(f *testing.F) {
	for _, seed := range []string{
		`{"owner":"o","code":"` + code + `","id":"7","data":"{\"seq\":7}"}`,
		`{"owner":"o","code":"` + code + `","id":"9","data":"{}","end":"done"}`,
		`{"owner":"o","code":"c","end":"done"}`, `{"owner":"o","code":"c","end":"not_found"}`,
		`{"owner":"o","code":"c","id":"","event":"note","data":""}`,
		`{"owner":"o","code":"c","data":"a\nb\u2028"}`, `{"owner":"o","code":"c","id":null,"data":null}`,
		`{"owner":"o","code":"c","end":"not_found","data":"x"}`, `{"owner":"o","code":"c","id":"1\r"}`,
		`{"owner":"o","code":"c","code":"d"}`, `{"code":"c"}`, `{"owner":"o","code":"\xff"}`, `[]`, `null`, ``, `{`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		e, err := envelope.Decode(in)
		if err != nil {
			if !errors.Is(err, envelope.ErrInvalid) {
				t.Fatalf("Decode(%q): %v does not wrap ErrInvalid", in, err)
			}
			return
		}
		out, err := e.Encode()
		if err != nil {
			t.Fatalf("Decode(%q) = %+v, which does not encode: %v", in, e, err)
		}
		if bytes.ContainsAny(out, "\r\n") {
			t.Fatalf("%+v encodes to more than one line: %q", e, out)
		}
		back, err := envelope.Decode(out)
		if err != nil || !reflect.DeepEqual(back, e) {
			t.Fatalf("%+v → %s → %+v, %v", e, out, back, err)
		}
		if e.End == envelope.EndNotFound && (e.Data != nil || e.ID != nil || e.Event != "") {
			t.Fatalf("Decode(%q) accepted a not_found envelope with an event: %+v", in, e)
		}
	})
}
