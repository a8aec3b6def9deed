package httpapi

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/exportstream/exportstream/backend/internal/job"
)

// FuzzDecodeRequest: any body either is refused with an error the API maps
// to a 4xx, or decodes to a request within every limit.
func FuzzDecodeRequest(f *testing.F) {
	for _, seed := range []string{
		`{"rows":10,"durationMs":100}`,
		`{"rows":10,"durationMs":100,"failAt":50,"filename":"a/b\"c.csv"}`,
		`{"rows":1e9}`, `{"rows":-1}`, `[]`, `null`, `{}`, `{"rows":1,"durationMs":1}{}`, "",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, body string) {
		r := httptest.NewRequest(http.MethodPost, "/v1/exports", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		req, err := decodeRequest(httptest.NewRecorder(), r)
		if err != nil {
			if st := toAPIError(err).Status; st < 400 || st >= 500 {
				t.Fatalf("body %q: error %v maps to %d, want a 4xx", body, err, st)
			}
			return
		}
		if req.Validate() != nil {
			t.Fatalf("body %q decoded to an invalid request %+v", body, req)
		}
	})
}

// FuzzContentDisposition: whatever name a user asks for, the header stays
// one line with no quote or separator breaking out of filename="…".
func FuzzContentDisposition(f *testing.F) {
	for _, seed := range []string{"report.csv", "../../etc/passwd", "a\"b", "naïve résumé.csv", "a\r\nSet-Cookie: x", "%00"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, requested string) {
		if !utf8.ValidString(requested) {
			return
		}
		name := job.FileName(job.Request{Filename: requested}, "0b8f2f5e-8a57-4c1b-9f6e-2d0c7f4b9a10")
		if strings.ContainsAny(name, "/\\\"'\r\n") {
			t.Fatalf("file name %q from %q keeps a separator, quote or newline", name, requested)
		}
		h := contentDisposition(name)
		if strings.ContainsAny(h, "\r\n") || strings.Count(h, `"`) != 2 || !strings.HasPrefix(h, `attachment; filename="`) {
			t.Fatalf("header %q from %q is malformed", h, requested)
		}
	})
}

// FuzzParseLastEventID: a header is either a plain non-negative decimal seq
// or treated as absent (0), never a negative or partial number.
func FuzzParseLastEventID(f *testing.F) {
	for _, seed := range []string{"0", "7", "-1", "+5", " 5", "5 ", "9223372036854775807", "9223372036854775808", "1e3", "0x10", "", "٣"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, h string) {
		n := parseLastEventID(h)
		if n < 0 {
			t.Fatalf("%q parsed to %d", h, n)
		}
		if n > 0 && strconv.FormatInt(n, 10) != strings.TrimLeft(h, "0") {
			t.Fatalf("%q parsed to %d, which is not what it says", h, n)
		}
	})
}
