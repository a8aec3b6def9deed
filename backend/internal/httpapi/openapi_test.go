package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	sse "github.com/tmaxmax/go-sse"

	"github.com/exportstream/exportstream/backend/internal/eventmux"
	"github.com/exportstream/exportstream/backend/internal/httpapi"
	"github.com/exportstream/exportstream/backend/internal/job"
	"github.com/exportstream/exportstream/backend/internal/worker"
	"github.com/exportstream/exportstream/internal/envelope"
)

// specPath is the API description shared with the BFF, whose TestOpenAPI
// holds every other operation to it through the real binaries.
const specPath = "../../../docs/openapi.yaml"

// muxPaths are the operations this package's TestOpenAPI answers for:
// the multiplexed stream and its subscription calls.
const muxPaths = "/v1/events"

// spec is docs/openapi.yaml with its backend server pointed at one test
// backend, and the documented responses the cases produced.
type spec struct {
	doc       *openapi3.T
	exercised map[string]bool // "operationId status"
}

func loadSpec(t *testing.T) *spec {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromFile(specPath)
	if err != nil {
		t.Fatalf("load %s: %v", specPath, err)
	}
	if err := doc.Validate(loader.Context); err != nil {
		t.Fatalf("%s is not a valid OpenAPI document: %v", specPath, err)
	}
	return &spec{doc: doc, exercised: map[string]bool{}}
}

// at routes the document's backend paths to base (the BFF's go nowhere).
func (s *spec) at(t *testing.T, base string) routers.Router {
	t.Helper()
	doc := *s.doc
	paths := openapi3.NewPaths()
	for path, item := range s.doc.Paths.Map() {
		if !strings.HasPrefix(path, "/v1/") {
			continue
		}
		copied := *item
		copied.Servers = openapi3.Servers{{URL: base}}
		paths.Set(path, &copied)
	}
	doc.Paths, doc.Servers = paths, openapi3.Servers{{URL: base}}
	router, err := gorillamux.NewRouter(&doc)
	if err != nil {
		t.Fatal(err)
	}
	return router
}

// specCase is one real request to a backend and the answer it must get.
type specCase struct {
	method, url string
	header      http.Header
	status      int
	code        string // the error code of the body, if an error
	valid       bool   // the request itself is meant to match the document
}

func (s *spec) input(ctx context.Context, t *testing.T, router routers.Router, c specCase) *openapi3filter.RequestValidationInput {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, c.method, c.url, nil)
	for k, v := range c.header {
		req.Header[k] = v
	}
	route, params, err := router.FindRoute(req)
	if err != nil {
		t.Fatalf("%s %s is not in %s: %v", c.method, c.url, specPath, err)
	}
	in := &openapi3filter.RequestValidationInput{
		Request: req, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, MultiError: true},
	}
	if c.valid {
		if err := openapi3filter.ValidateRequest(ctx, in); err != nil {
			t.Errorf("%s %s does not match %s: %v", c.method, c.url, specPath, err)
		}
	}
	return in
}

// do sends c and validates the answer (status, headers, body).
func (s *spec) do(t *testing.T, router routers.Router, c specCase) {
	t.Helper()
	in := s.input(t.Context(), t, router, c)
	resp, err := http.DefaultClient.Do(in.Request)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	s.exercised[in.Route.Operation.OperationID+" "+strconv.Itoa(resp.StatusCode)] = true
	if resp.StatusCode != c.status {
		t.Errorf("%s %s: %d, want %d; body %s", c.method, c.url, resp.StatusCode, c.status, body)
	}
	if err := openapi3filter.ValidateResponse(t.Context(), &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in, Status: resp.StatusCode, Header: resp.Header, Body: io.NopCloser(bytes.NewReader(body)),
		Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}); err != nil {
		t.Errorf("%s %s → %d does not match %s: %v\nbody: %s", c.method, c.url, resp.StatusCode, specPath, err, body)
	}
	if c.code != "" {
		var e struct{ Error struct{ Code string } }
		if json.Unmarshal(body, &e) != nil || e.Error.Code != c.code {
			t.Errorf("%s %s: body %s, want error code %s", c.method, c.url, body, c.code)
		}
	}
}

// stream opens GET /v1/events, validates its head against the document and
// hands each event, checked against the document's event schemas (and the
// envelope's data against Job), to each; it returns when each returns false.
func (s *spec) stream(t *testing.T, router routers.Router, c specCase, each func(id string, env envelope.Envelope) bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	in := s.input(ctx, t, router, c)
	resp, err := http.DefaultClient.Do(in.Request)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	s.exercised[in.Route.Operation.OperationID+" "+strconv.Itoa(resp.StatusCode)] = true
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v1/events: %d", resp.StatusCode)
	}
	if err := openapi3filter.ValidateResponse(ctx, &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in, Status: resp.StatusCode, Header: resp.Header, Body: resp.Body,
		Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true, ExcludeResponseBody: true},
	}); err != nil {
		t.Errorf("GET /v1/events → 200 does not match %s: %v", specPath, err)
	}
	schemas := s.doc.Components.Schemas
	validate := func(name string, v any) {
		if err := s.doc.ValidateSchemaJSON(schemas[name].Value, v, openapi3.EnableJSONSchema2020(), openapi3.MultiErrors(), openapi3.VisitAsResponse()); err != nil {
			t.Errorf("%v does not match %s's %s: %v", v, specPath, name, err)
		}
	}
	asJSON := func(data string) any {
		var v any
		if err := json.Unmarshal([]byte(data), &v); err != nil {
			t.Fatalf("event data %q is not JSON: %v", data, err)
		}
		return v
	}
	id := ""
	for ev, err := range sse.Read(resp.Body, nil) {
		if err != nil {
			t.Fatalf("reading the stream: %v", err)
		}
		if id == "" {
			validate("MuxStreamEvent", map[string]any{"event": ev.Type, "data": ev.Data})
			validate("MuxOpened", asJSON(ev.Data))
			var o envelope.Opened
			_ = json.Unmarshal([]byte(ev.Data), &o)
			id = o.Stream
			if !each(id, envelope.Envelope{}) {
				return
			}
			continue
		}
		frame := map[string]any{"data": ev.Data}
		if ev.Type != "" {
			frame["event"] = ev.Type
		}
		validate("MuxEnvelopeEvent", frame)
		validate("MuxEnvelope", asJSON(ev.Data))
		env, err := envelope.Decode([]byte(ev.Data))
		if err != nil {
			t.Fatalf("envelope %q: %v", ev.Data, err)
		}
		if env.Data != nil {
			validate("Job", asJSON(*env.Data))
		}
		if !each(id, env) {
			return
		}
	}
	t.Fatal("the stream ended")
}

// checkCoverage fails t for each response documented for the
// multiplexed stream's operations that no case produced.
func (s *spec) checkCoverage(t *testing.T) {
	t.Helper()
	var missing []string
	for path, item := range s.doc.Paths.Map() {
		if !strings.HasPrefix(path, muxPaths) {
			continue
		}
		for method, op := range item.Operations() {
			for status := range op.Responses.Map() {
				if key := op.OperationID + " " + status; !s.exercised[key] {
					missing = append(missing, fmt.Sprintf("%s %s %s (%s)", method, path, status, key))
				}
			}
		}
	}
	slices.Sort(missing)
	if len(missing) > 0 {
		t.Errorf("documented in %s but not produced by TestOpenAPI:\n  %s", specPath, strings.Join(missing, "\n  "))
	}
}

// TestOpenAPI holds the multiplexed stream (GET /v1/events) and its
// subscription calls to docs/openapi.yaml: every answer is validated
// against it (status, headers, body; each event of the stream, each
// envelope and the job in it), and each response it documents for them
// must be produced here. The BFF's TestOpenAPI does the same for every
// other operation of the document.
func TestOpenAPI(t *testing.T) {
	s := loadSpec(t)
	skipped := false
	run := func(name string, f func(t *testing.T)) {
		t.Run(name, func(t *testing.T) {
			defer func() { skipped = skipped || t.Skipped() }()
			f(t)
		})
	}
	run("a stream and its calls", func(t *testing.T) {
		b := newBackend(t, withMux(eventmux.Config{MaxSubscriptions: 2}))
		r := s.at(t, b.url)
		var done job.Job
		call(t, "POST", b.url+"/v1/exports", `{"rows":10,"durationMs":0}`, owner("o"), &done)
		last(follow(t, b.url+"/v1/exports/"+done.Code+"/events", owner("o")))
		running := storedJob(t, b.store, "o")
		own := http.Header{"X-Export-Owner": {"o"}}
		var stream string
		sub := func(code string) string { return b.url + "/v1/events/" + stream + "/subscriptions/" + code }
		step := 0
		s.stream(t, r, specCase{method: "GET", url: b.url + "/v1/events", header: http.Header{"X-Forwarded-Prefix": {"/api"}}, valid: true}, func(id string, env envelope.Envelope) bool {
			switch step++; step {
			case 1:
				stream = id
				s.do(t, r, specCase{method: "PUT", url: sub(done.Code), header: own, status: 204, valid: true})
			case 2: // done's terminal snapshot
				if env.End != envelope.EndDone || env.Data == nil {
					t.Errorf("a finished export: %s", show(env))
				}
				s.do(t, r, specCase{method: "PUT", url: sub(done.Code), header: http.Header{"X-Export-Owner": {"o"}, "Last-Event-ID": {*env.ID}}, status: 204, valid: true})
			case 3: // the end alone
				if env.End != envelope.EndDone || env.Data != nil {
					t.Errorf("at the last seq: %s", show(env))
				}
				s.do(t, r, specCase{method: "PUT", url: sub(done.Code), header: owner("mallory"), status: 204, valid: true})
			case 4: // another owner's
				if env.End != envelope.EndNotFound {
					t.Errorf("another owner: %s", show(env))
				}
				s.do(t, r, specCase{method: "PUT", url: sub(running.Code), header: own, status: 204, valid: true})
				s.do(t, r, specCase{method: "PUT", url: sub("not-a-code"), header: own, status: 204, valid: true})
			case 5, 6: // running's snapshot, not-a-code's end, in either order
				if step == 6 {
					s.do(t, r, specCase{method: "PUT", url: sub(storedJob(t, b.store, "o").Code), header: own, status: 204, valid: true})
					s.do(t, r, specCase{method: "PUT", url: sub(storedJob(t, b.store, "o").Code), header: own, status: 429, code: "TOO_MANY_SUBSCRIPTIONS", valid: true})
					s.do(t, r, specCase{method: "DELETE", url: sub(running.Code), header: own, status: 204, valid: true})
					s.do(t, r, specCase{method: "PUT", url: sub(strings.Repeat("x", 129)), header: own, status: 400, code: "INVALID_CODE"})
					s.do(t, r, specCase{method: "DELETE", url: sub(running.Code), header: owner("two words"), status: 400, code: "INVALID_OWNER"})
					return false
				}
			}
			return true
		})
		unknown := job.New(job.Request{Rows: 1}, "", time.Now()).Code
		gone := b.url + "/v1/events/" + unknown + "/subscriptions/" + done.Code
		s.do(t, r, specCase{method: "PUT", url: gone, header: own, status: 404, code: "STREAM_NOT_FOUND", valid: true})
		s.do(t, r, specCase{method: "DELETE", url: gone, header: own, status: 404, code: "STREAM_NOT_FOUND", valid: true})
		b.api.CloseStreams()
		s.do(t, r, specCase{method: "GET", url: b.url + "/v1/events", status: 503, code: "UNAVAILABLE", valid: true})
	})
	run("the service token", func(t *testing.T) {
		b := newBackend(t, func(h *httpapi.Config, _ *worker.Config) { h.ServiceToken = "s3cret" })
		r := s.at(t, b.url)
		url := b.url + "/v1/events/" + job.New(job.Request{Rows: 1}, "", time.Now()).Code + "/subscriptions/" + unknownCode
		s.do(t, r, specCase{method: "GET", url: b.url + "/v1/events", status: 401, code: "UNAUTHORIZED"})
		s.do(t, r, specCase{method: "PUT", url: url, status: 401, code: "UNAUTHORIZED"})
		s.do(t, r, specCase{method: "DELETE", url: url, status: 401, code: "UNAUTHORIZED"})
	})
	run("Redis away", func(t *testing.T) {
		srv, replicas := redisReplicas(t, 1, eventmux.Config{})
		b := replicas[0]
		r := s.at(t, b.url)
		srv.Stop()
		url := b.url + "/v1/events/" + job.New(job.Request{Rows: 1}, "", time.Now()).Code + "/subscriptions/" + unknownCode
		s.do(t, r, specCase{method: "GET", url: b.url + "/v1/events", status: 503, code: "STORE_UNAVAILABLE", valid: true})
		s.do(t, r, specCase{method: "PUT", url: url, header: owner("o"), status: 503, code: "STORE_UNAVAILABLE", valid: true})
		s.do(t, r, specCase{method: "DELETE", url: url, header: owner("o"), status: 503, code: "STORE_UNAVAILABLE", valid: true})
	})
	switch {
	case skipped:
		t.Log("coverage of the document not checked: a part was skipped")
	case t.Failed():
		t.Log("coverage of the document not checked: a case failed")
	default:
		s.checkCoverage(t)
	}
}

const unknownCode = "0b8f2f5e-8a57-4c1b-9f6e-2d0c7f4b9a10"
