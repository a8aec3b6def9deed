package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	sse "github.com/tmaxmax/go-sse"

	"github.com/exportstream/exportstream/bff/internal/backend"
	"github.com/exportstream/exportstream/bff/internal/httpapi"
	"github.com/exportstream/exportstream/bff/internal/relay"
)

// specPath is the API description that these tests hold the real services
// to; fixtureDir holds example job JSON that it is checked against too.
const (
	specPath   = "../../../docs/openapi.yaml"
	fixtureDir = "../../../docs/fixtures"
)

// The servers the document names; each test points them at its own processes.
const (
	specBFF     = "http://localhost:8080"
	specBackend = "http://localhost:8081"
)

const (
	owner       = "openapi-test"
	unknownCode = "0b8f2f5e-8a57-4c1b-9f6e-2d0c7f4b9a10"
)

// contract is docs/openapi.yaml, loaded and validated, with its servers
// pointed at one test's backend and BFF, and what was exercised so far.
type contract struct {
	doc    *openapi3.T
	router routers.Router
	bff    string
	be     string
	client *http.Client // keeps the BFF's cookies, should it set a session
}

// exercised records the documented responses the cases produced, over every
// scenario of TestOpenAPI: "operationId status".
var exercised = struct {
	sync.Mutex
	hit map[string]bool
}{hit: map[string]bool{}}

func loadContract(t *testing.T, bffURL, backendURL string) *contract {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromFile(specPath)
	if err != nil {
		t.Fatalf("load %s: %v", specPath, err)
	}
	if err := doc.Validate(loader.Context); err != nil {
		t.Fatalf("%s is not a valid OpenAPI document: %v", specPath, err)
	}
	// Route by the test's real addresses: every server URL of the document
	// (top level, path items, operations) is replaced by the process it names.
	actual := map[string]string{specBFF: bffURL, specBackend: backendURL}
	repoint := func(servers openapi3.Servers) {
		for _, s := range servers {
			u, ok := actual[s.URL]
			if !ok {
				t.Fatalf("%s: server %q is neither the BFF's %s nor the backend's %s", specPath, s.URL, specBFF, specBackend)
			}
			s.URL = u
		}
	}
	repoint(doc.Servers)
	for _, item := range doc.Paths.Map() {
		repoint(item.Servers)
		for _, op := range item.Operations() {
			if op.Servers != nil {
				repoint(*op.Servers)
			}
		}
	}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	jar, _ := cookiejar.New(nil)
	return &contract{doc: doc, router: router, bff: bffURL, be: backendURL, client: &http.Client{Jar: jar}}
}

// apiCase is one real request and the status it must get.
type apiCase struct {
	name   string
	method string
	url    string // absolute: the BFF's or the backend's
	header http.Header
	body   string
	status int
	// code is the error code the body must carry, when it is an error.
	code string
	// validRequest also checks the request against the document; off for
	// requests that are wrong on purpose.
	validRequest bool
	// afterFirst, for an event stream, runs once its first event is read.
	afterFirst func()
}

func (c *contract) newRequest(ctx context.Context, tc apiCase) *http.Request {
	var body io.Reader
	if tc.body != "" {
		body = strings.NewReader(tc.body)
	}
	req, err := http.NewRequestWithContext(ctx, tc.method, tc.url, body)
	if err != nil {
		panic(err)
	}
	if tc.body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if strings.HasPrefix(tc.url, c.bff) {
		req.Header.Set("Origin", c.bff) // a browser's same-origin request
	}
	for k, v := range tc.header {
		req.Header[k] = v
	}
	return req
}

// route finds the documented operation of req and checks the request
// itself against the document when it is meant to be valid.
func (c *contract) route(t *testing.T, tc apiCase) *openapi3filter.RequestValidationInput {
	t.Helper()
	req := c.newRequest(t.Context(), tc)
	route, params, err := c.router.FindRoute(req)
	if err != nil {
		t.Fatalf("%s %s is not in %s: %v", tc.method, tc.url, specPath, err)
	}
	in := &openapi3filter.RequestValidationInput{
		Request: req, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, MultiError: true},
	}
	if tc.validRequest {
		if err := openapi3filter.ValidateRequest(t.Context(), in); err != nil {
			t.Errorf("the request does not match %s: %v", specPath, err)
		}
		in.Request = c.newRequest(t.Context(), tc) // ValidateRequest read the body
	}
	return in
}

func (c *contract) record(route *routers.Route, status int) {
	exercised.Lock()
	defer exercised.Unlock()
	exercised.hit[route.Operation.OperationID+" "+strconv.Itoa(status)] = true
}

// do sends tc and validates the response's status, headers and body
// against the document. It returns the response with its body read.
func (c *contract) do(t *testing.T, tc apiCase) (*http.Response, []byte) {
	t.Helper()
	in := c.route(t, tc)
	resp, err := c.client.Do(in.Request)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != tc.status {
		t.Errorf("%s %s: status %d, want %d; body %s", tc.method, tc.url, resp.StatusCode, tc.status, body)
	}
	c.record(in.Route, resp.StatusCode)
	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in,
		Status:                 resp.StatusCode,
		Header:                 resp.Header,
		Body:                   io.NopCloser(bytes.NewReader(body)),
		Options:                &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	if err := openapi3filter.ValidateResponse(t.Context(), out); err != nil {
		t.Errorf("%s %s → %d does not match %s: %v\nheaders: %v\nbody: %s", tc.method, tc.url, resp.StatusCode, specPath, err, resp.Header, body)
	}
	if tc.code != "" {
		var e struct{ Error struct{ Code string } }
		if json.Unmarshal(body, &e) != nil || e.Error.Code != tc.code {
			t.Errorf("%s %s: body %s, want error code %s", tc.method, tc.url, body, tc.code)
		}
	}
	return resp, body
}

// run runs each case as a subtest.
func (c *contract) run(t *testing.T, cases []apiCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { c.do(t, tc) })
	}
}

// create starts an export by POSTing to url (…/api/exports or …/v1/exports).
func (c *contract) create(t *testing.T, url, body string, header http.Header) specJob {
	t.Helper()
	_, b := c.do(t, apiCase{method: "POST", url: url, header: header, body: body, status: http.StatusAccepted, validRequest: true})
	var j specJob
	if err := json.Unmarshal(b, &j); err != nil {
		t.Fatalf("create: %s: %v", b, err)
	}
	return j
}

type specJob struct {
	Code   string `json:"code"`
	Status string `json:"status"`
	Seq    int64  `json:"seq"`
	File   *struct {
		URL    string `json:"url"`
		SHA256 string `json:"sha256"`
		Size   int64  `json:"size"`
	} `json:"file"`
}

// streamEvent is one event as an EventSource would see it.
type streamEvent struct {
	id, data string
	job      specJob
}

// events opens tc's event stream, checks the response against the document
// (status, headers and content type: the body is a stream), then reads it to
// its end with go-sse, checking the wire format and each event against the
// schema the document gives its data.
func (c *contract) events(t *testing.T, tc apiCase) []streamEvent {
	t.Helper()
	route, resp := c.send(t, tc)
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return nil
	}
	ct := resp.Header.Get("Content-Type")
	media := route.Operation.Responses.Status(http.StatusOK).Value.Content.Get(ct)
	if media == nil || media.Schema == nil {
		t.Fatalf("%s: content type %q is not documented with a schema", tc.url, ct)
	}
	jobFrame, errorFrame := eventFrames(t, media.Schema.Value)

	head := &prefixRecorder{r: resp.Body}
	var evs []streamEvent
	for ev, err := range sse.Read(head, nil) {
		if err != nil {
			t.Fatalf("%s: reading the stream: %v", tc.url, err)
		}
		if len(evs) > 0 && isTerminal(evs[len(evs)-1].job.Status) {
			t.Errorf("%s: an event after the terminal one: %s", tc.url, ev.Data)
		}
		if ev.Type != "" {
			t.Errorf("%s: event type %q, want none (EventSource.onmessage must see every event)", tc.url, ev.Type)
		}
		var j specJob
		if err := json.Unmarshal([]byte(ev.Data), &j); err != nil {
			t.Fatalf("%s: event data %q is not JSON: %v", tc.url, ev.Data, err)
		}
		frame, id := map[string]any{"data": ev.Data}, ev.LastEventID
		schema := jobFrame
		if j.Status == "ERROR" {
			// go-sse reports the last id seen; an ErrorEvent itself has none.
			schema = errorFrame
			id = ""
			if schema == nil {
				t.Fatalf("%s: an ERROR event, which this stream's documentation does not allow: %s", tc.url, ev.Data)
			}
		} else {
			frame["id"] = id
			if id != strconv.FormatInt(j.Seq, 10) {
				t.Errorf("%s: event id %q is not the job's seq %d", tc.url, id, j.Seq)
			}
		}
		validateEvent(t, c.doc, schema, frame, ev.Data)
		evs = append(evs, streamEvent{id, ev.Data, j})
		if len(evs) == 1 && tc.afterFirst != nil {
			tc.afterFirst()
		}
	}
	if !strings.HasPrefix(head.prefix.String(), "retry:") {
		t.Errorf("%s: the stream starts with %q, want a retry: field first", tc.url, head.prefix.String())
	}
	if len(evs) == 0 {
		t.Fatalf("%s: the stream ended without an event", tc.url)
	}
	if last := evs[len(evs)-1].job.Status; !isTerminal(last) && last != "ERROR" {
		t.Errorf("%s: the stream ended after %s, want it to end only after a terminal status", tc.url, last)
	}
	return evs
}

// open sends tc, an event stream request, checks the response's status
// against tc's and its head against the document, and returns the
// response with its body open: it is closed when the test ends, or by the
// caller.
func (c *contract) open(t *testing.T, tc apiCase) *http.Response {
	t.Helper()
	_, resp := c.send(t, tc)
	return resp
}

// send is open, and returns the route the document gives tc too.
func (c *contract) send(t *testing.T, tc apiCase) (*routers.Route, *http.Response) {
	t.Helper()
	in := c.route(t, tc)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	in.Request = in.Request.WithContext(ctx)
	resp, err := c.client.Do(in.Request)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = resp.Body.Close() })
	c.record(in.Route, resp.StatusCode)
	if resp.StatusCode != tc.status {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("%s: status %d, want %d; body %s", tc.url, resp.StatusCode, tc.status, b)
	}
	if err := openapi3filter.ValidateResponse(ctx, &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in,
		Status:                 resp.StatusCode,
		Header:                 resp.Header,
		Body:                   resp.Body,
		Options:                &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true, ExcludeResponseBody: true},
	}); err != nil {
		t.Errorf("%s → %d does not match %s: %v", tc.url, resp.StatusCode, specPath, err)
	}
	return in.Route, resp
}

// sessionEvents reads the session's stream (GET /api/events) as documented:
// a retry field and a ping first, then events without a type whose id is
// "<code>:<seq>" and whose data is a Job (or an ErrorEvent, without id),
// until every code in want has had a snapshot. It returns each code's last.
func (c *contract) sessionEvents(t *testing.T, tc apiCase, want ...string) map[string]specJob {
	t.Helper()
	resp := c.open(t, tc)
	head := &prefixRecorder{r: resp.Body}
	job, errorEvent := c.doc.Components.Schemas["Job"].Value, c.doc.Components.Schemas["ErrorEvent"].Value
	seen := map[string]specJob{}
	missing := func() []string {
		var m []string
		for _, code := range want {
			if _, ok := seen[code]; !ok {
				m = append(m, code)
			}
		}
		return m
	}
	for ev, err := range sse.Read(head, nil) {
		if err != nil {
			t.Fatalf("%s: reading the stream: %v (still waiting for %v)", tc.url, err, missing())
		}
		if ev.Type != "" {
			t.Errorf("%s: event type %q, want none", tc.url, ev.Type)
		}
		var j specJob
		if err := json.Unmarshal([]byte(ev.Data), &j); err != nil {
			t.Fatalf("%s: event data %q is not JSON: %v", tc.url, ev.Data, err)
		}
		var v any
		_ = json.Unmarshal([]byte(ev.Data), &v)
		schema := job
		if j.Status == "ERROR" {
			schema = errorEvent
		} else if want := j.Code + ":" + strconv.FormatInt(j.Seq, 10); ev.LastEventID != want {
			t.Errorf("%s: event id %q, want %q (<code>:<seq>)", tc.url, ev.LastEventID, want)
		}
		if err := c.doc.ValidateSchemaJSON(schema, v, openapi3.EnableJSONSchema2020(), openapi3.MultiErrors(), openapi3.VisitAsResponse()); err != nil {
			t.Errorf("%s: event data %s does not match %s: %v", tc.url, ev.Data, specPath, err)
		}
		seen[j.Code] = j
		if len(missing()) == 0 {
			break
		}
	}
	if m := missing(); len(m) > 0 {
		t.Fatalf("%s ended before a snapshot of %v", tc.url, m)
	}
	if p := head.prefix.String(); !strings.HasPrefix(p, "retry:") || !strings.Contains(p, "\n: ping\n") {
		t.Errorf("%s: the stream starts with %q, want a retry: field and a : ping comment first", tc.url, p)
	}
	return seen
}

func isTerminal(status string) bool {
	return status == "COMPLETED" || status == "FAILED" || status == "CANCELLED"
}

// eventFrames reads, from a text/event-stream schema (an array of events),
// the schema of a job event (it has an id) and of an ERROR event (no id),
// nil when the stream has none.
func eventFrames(t *testing.T, stream *openapi3.Schema) (jobFrame, errorFrame *openapi3.Schema) {
	t.Helper()
	if stream.Items == nil {
		t.Fatalf("the event stream schema is not an array of events")
	}
	items := stream.Items.Value
	candidates := []*openapi3.Schema{items}
	if len(items.OneOf) > 0 {
		candidates = nil
		for _, s := range items.OneOf {
			candidates = append(candidates, s.Value)
		}
	}
	for _, s := range candidates {
		data := s.Properties["data"]
		if data == nil || data.Value.ContentSchema == nil {
			t.Fatalf("an event schema without data.contentSchema")
		}
		switch ref := data.Value.ContentSchema.Ref; {
		case slices.Contains(s.Required, "id") && ref == "#/components/schemas/Job":
			jobFrame = s
		case !slices.Contains(s.Required, "id") && ref == "#/components/schemas/ErrorEvent":
			errorFrame = s
		default:
			t.Fatalf("an event schema whose data is %q, want the Job (with an id) or the ErrorEvent (without)", ref)
		}
	}
	if jobFrame == nil {
		t.Fatalf("no event schema carries a Job")
	}
	return jobFrame, errorFrame
}

// validateEvent checks one event's fields and its data against the schema
// the document gives them (contentSchema is only an annotation in JSON
// Schema, so the data is checked on its own).
func validateEvent(t *testing.T, doc *openapi3.T, frameSchema *openapi3.Schema, frame map[string]any, data string) {
	t.Helper()
	if err := doc.ValidateSchemaJSON(frameSchema, frame, openapi3.EnableJSONSchema2020(), openapi3.MultiErrors()); err != nil {
		t.Errorf("event %v does not match %s: %v", frame, specPath, err)
	}
	var v any
	if err := json.Unmarshal([]byte(data), &v); err != nil {
		t.Fatal(err)
	}
	dataSchema := frameSchema.Properties["data"].Value.ContentSchema.Value
	if err := doc.ValidateSchemaJSON(dataSchema, v, openapi3.EnableJSONSchema2020(), openapi3.MultiErrors(), openapi3.VisitAsResponse()); err != nil {
		t.Errorf("event data %s does not match %s: %v", data, specPath, err)
	}
}

// prefixRecorder keeps the first bytes read through it.
type prefixRecorder struct {
	r      io.Reader
	prefix bytes.Buffer
}

func (p *prefixRecorder) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if room := 64 - p.prefix.Len(); room > 0 {
		p.prefix.Write(b[:min(n, room)])
	}
	return n, err
}

// waitFor polls a job until it has ended.
func (c *contract) waitFor(t *testing.T, url string) specJob {
	t.Helper()
	return c.waitUntil(t, url, "ended", func(j specJob) bool { return isTerminal(j.Status) })
}

// waitUntil polls a job every 20 ms until ok holds, for up to 30 s.
func (c *contract) waitUntil(t *testing.T, url, what string, ok func(specJob) bool) specJob {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		_, b := c.do(t, apiCase{method: "GET", url: url, header: ownerHeader(url, c.be), status: http.StatusOK, validRequest: true})
		var j specJob
		_ = json.Unmarshal(b, &j)
		if ok(j) {
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not %s after 30 s: %s", url, what, b)
		}
		<-tick.C
	}
}

func ownerHeader(url, backend string) http.Header {
	if strings.HasPrefix(url, backend) {
		return http.Header{"X-Export-Owner": {owner}}
	}
	return nil
}

// notExercised are the documented responses TestOpenAPI does not produce,
// each with why and where it is tested instead ("operationId status").
// The test fails on any other documented response it did not produce, and
// on an entry here that it produced after all or that the document no
// longer has: the list cannot go stale.
var notExercised = map[string]string{
	"backendCreateExport 507": "needs the data directory's disk full for real: backend/cmd/backend " +
		"TestAFullDiskRefusesCreatesWith507FailsRunningJobsClearlyAndCorruptsNothing fills a tmpfs " +
		"(mounting one needs root) and checks the status, INSUFFICIENT_STORAGE and Retry-After",
	"createExport 507": "the backend's 507 passed through by the BFF: the same test checks it through the real BFF",
}

// heldByTheBackend are the paths whose every documented response the
// backend's own TestOpenAPI (backend/internal/httpapi) produces and
// validates: the multiplexed stream, which the BFF uses but does not serve.
const heldByTheBackend = "/v1/events"

// checkCoverage fails t for every documented response no case produced,
// past notExercised and heldByTheBackend, and for every entry of
// notExercised that is stale.
func (c *contract) checkCoverage(t *testing.T) {
	t.Helper()
	exercised.Lock()
	defer exercised.Unlock()
	documented := map[string]bool{}
	var missing []string
	for path, item := range c.doc.Paths.Map() {
		if strings.HasPrefix(path, heldByTheBackend) {
			continue
		}
		for method, op := range item.Operations() {
			for status := range op.Responses.Map() {
				key := op.OperationID + " " + status
				documented[key] = true
				if !exercised.hit[key] && notExercised[key] == "" {
					missing = append(missing, fmt.Sprintf("%s %s %s (%s)", method, path, status, key))
				}
			}
		}
	}
	slices.Sort(missing)
	if len(missing) > 0 {
		t.Errorf("documented in %s but not exercised by TestOpenAPI (exercise them, or list them in notExercised with the reason):\n  %s", specPath, strings.Join(missing, "\n  "))
	}
	for key, why := range notExercised {
		switch {
		case !documented[key]:
			t.Errorf("notExercised lists %q, which %s does not document: remove it", key, specPath)
		case exercised.hit[key]:
			t.Errorf("notExercised lists %q, which TestOpenAPI now produces: remove it (it said: %s)", key, why)
		}
	}
}

// runsEverything reports whether this run of the package runs all of
// TestOpenAPI, so that its coverage can be judged: not with -run or
// -skip narrowed to some of its subtests.
func runsEverything() bool {
	run, skip := flag.Lookup("test.run"), flag.Lookup("test.skip")
	return (run == nil || !strings.Contains(run.Value.String(), "/")) && (skip == nil || skip.Value.String() == "")
}

// TestOpenAPI sends real requests to a real backend and the BFF in front of
// it and validates every answer against docs/openapi.yaml (status, headers,
// body; each event of a stream), so the document cannot drift from the
// services. At the end it fails on any documented response that no case
// produced and notExercised does not explain.
func TestOpenAPI(t *testing.T) {
	c := loadContract(t, specBFF, specBackend)
	for _, name := range []string{"Job", "ExportFile", "ExportRequest", "Error", "ExportList", "ErrorEvent"} {
		if c.doc.Components.Schemas[name] == nil {
			t.Errorf("components.schemas.%s is missing", name)
		}
	}
	t.Run("fixtures", func(t *testing.T) { testOpenAPIFixtures(t, c.doc) })
	t.Run("responses", testOpenAPIResponses)
	t.Run("service token and backend outage", testOpenAPIServiceTokenAndBackendOutage)
	t.Run("limits and retention", testOpenAPILimitsAndRetention)
	t.Run("session expiry", testOpenAPISessionExpiry)
	switch {
	case !runsEverything():
		t.Log("coverage of the document not checked: -run or -skip selects only some of TestOpenAPI")
	case t.Failed():
		t.Log("coverage of the document not checked: a case failed")
	default:
		c.checkCoverage(t)
	}
}

// testOpenAPIFixtures checks docs/fixtures (which the Go and TypeScript
// types are checked against too) against the document's schemas.
func testOpenAPIFixtures(t *testing.T, doc *openapi3.T) {
	paths, err := filepath.Glob(filepath.Join(fixtureDir, "*.json"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no fixtures in %s: %v", fixtureDir, err)
	}
	for _, p := range paths {
		name := filepath.Base(p)
		schema := "Job"
		if name == "error-event.json" {
			schema = "ErrorEvent"
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var v any
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if err := doc.ValidateSchemaJSON(doc.Components.Schemas[schema].Value, v, openapi3.EnableJSONSchema2020(), openapi3.MultiErrors(), openapi3.VisitAsResponse()); err != nil {
			t.Errorf("%s does not match the %s schema of %s: %v", name, schema, specPath, err)
		}
	}
}

func testOpenAPIResponses(t *testing.T) {
	be := startBackend(t)
	bffURL := startBFF(t, be.url, 5*time.Second)
	c := loadContract(t, bffURL, be.url)

	bff, v1 := bffURL+"/api/exports", be.url+"/v1/exports"
	own := http.Header{"X-Export-Owner": {owner}}
	withOwner := func(h http.Header) http.Header {
		h = h.Clone()
		h.Set("X-Export-Owner", owner)
		return h
	}
	unknown := unknownCode
	big := `{"rows":1,"durationMs":0,"filename":"` + strings.Repeat("a", 1<<20) + `"}`

	// Jobs that finish at once, fail, and run long (for 409 and cancel).
	done := c.create(t, bff, `{"rows":2000,"durationMs":200,"filename":"openapi report"}`, nil)
	doneV1 := c.create(t, v1, `{"rows":500,"durationMs":0}`, own)
	failed := c.create(t, bff, `{"rows":1000,"durationMs":200,"failAt":50}`, nil)
	long := c.create(t, bff, `{"rows":1000,"durationMs":60000}`, nil)
	longV1 := c.create(t, v1, `{"rows":1000,"durationMs":60000}`, own)

	t.Run("events", func(t *testing.T) {
		evs := c.events(t, apiCase{method: "GET", url: bff + "/" + done.Code + "/events", status: 200, validRequest: true})
		if last := evs[len(evs)-1].job; last.Status != "COMPLETED" || last.File == nil || last.File.URL != "/api/exports/"+done.Code+"/file" {
			t.Errorf("BFF stream ended with %s, want COMPLETED with a file under /api", evs[len(evs)-1].data)
		}
		evs = c.events(t, apiCase{method: "GET", url: v1 + "/" + doneV1.Code + "/events", header: own, status: 200, validRequest: true})
		if last := evs[len(evs)-1].job; last.Status != "COMPLETED" || last.File == nil || last.File.URL != "/v1/exports/"+doneV1.Code+"/file" {
			t.Errorf("backend stream ended with %s, want COMPLETED with a file under /v1", evs[len(evs)-1].data)
		}
		final := strconv.FormatInt(evs[len(evs)-1].job.Seq, 10)
		c.events(t, apiCase{method: "GET", url: v1 + "/" + doneV1.Code + "/events", header: withOwner(http.Header{"Last-Event-ID": {final}}), status: 204, validRequest: true})
		evs = c.events(t, apiCase{method: "GET", url: bff + "/" + failed.Code + "/events", status: 200, validRequest: true})
		if last := evs[len(evs)-1].job; last.Status != "FAILED" {
			t.Errorf("failAt stream ended with %s, want FAILED", evs[len(evs)-1].data)
		}
		evs = c.events(t, apiCase{method: "GET", url: bff + "/" + done.Code + "/events", status: 200, validRequest: true})
		final = strconv.FormatInt(evs[len(evs)-1].job.Seq, 10)
		c.events(t, apiCase{method: "GET", url: bff + "/" + done.Code + "/events", header: http.Header{"Last-Event-ID": {final}}, status: 204, validRequest: true})
	})
	t.Run("the session's stream", func(t *testing.T) {
		last := c.sessionEvents(t, apiCase{method: "GET", url: bffURL + "/api/events", status: 200, validRequest: true}, done.Code, failed.Code, long.Code)
		if j := last[long.Code]; j.Status != "PENDING" && j.Status != "IN_PROGRESS" {
			t.Errorf("the running export's snapshot on /api/events: %s", j.Status)
		}
	})
	doneJob := c.waitFor(t, bff+"/"+done.Code)
	doneV1Job := c.waitFor(t, v1+"/"+doneV1.Code)
	if doneJob.File == nil || doneV1Job.File == nil {
		t.Fatal("a COMPLETED job without a file")
	}
	etag := `"` + doneJob.File.SHA256 + `"`
	past := fmt.Sprintf("bytes=%d-", doneJob.File.Size+10)

	deleted := c.create(t, bff, `{"rows":10,"durationMs":0}`, http.Header{"Idempotency-Key": {"bff-key-deleted"}})
	c.run(t, []apiCase{
		{name: "BFF cancel, a keyed export", method: "DELETE", url: bff + "/" + deleted.Code, status: 200, validRequest: true},
		{name: "BFF delete, a keyed export", method: "DELETE", url: bff + "/" + deleted.Code, status: 204, validRequest: true},
		{name: "BFF create, the key of a deleted export", method: "POST", url: bff, header: http.Header{"Idempotency-Key": {"bff-key-deleted"}}, body: `{"rows":10,"durationMs":0}`, status: 409, code: "EXPORT_DELETED", validRequest: true},
	})
	c.run(t, []apiCase{
		// create (durationMs left out: it is optional, absent is 0)
		{name: "BFF create, a key", method: "POST", url: bff, header: http.Header{"Idempotency-Key": {"bff-key-1"}}, body: `{"rows":10}`, status: 202, validRequest: true},
		{name: "BFF create, the key again", method: "POST", url: bff, header: http.Header{"Idempotency-Key": {"bff-key-1"}}, body: `{"rows":10}`, status: 200, validRequest: true},
		{name: "BFF create, the key with another body", method: "POST", url: bff, header: http.Header{"Idempotency-Key": {"bff-key-1"}}, body: `{"rows":11,"durationMs":0}`, status: 409, code: "IDEMPOTENCY_KEY_REUSED", validRequest: true},
		{name: "BFF create, not JSON", method: "POST", url: bff, body: `nope`, status: 400, code: "INVALID_JSON"},
		{name: "BFF create, an unknown field", method: "POST", url: bff, body: `{"rows":1,"durationMs":0,"color":"red"}`, status: 400, code: "INVALID_JSON"},
		{name: "BFF create, text/plain", method: "POST", url: bff, header: http.Header{"Content-Type": {"text/plain"}}, body: `{"rows":1,"durationMs":0}`, status: 415, code: "UNSUPPORTED_MEDIA_TYPE"},
		{name: "BFF create, out of range", method: "POST", url: bff, body: `{"rows":0,"durationMs":0}`, status: 422, code: "VALIDATION_FAILED"},
		{name: "BFF create, another origin", method: "POST", url: bff, header: http.Header{"Origin": {"https://evil.example"}}, body: `{"rows":1,"durationMs":0}`, status: 403, code: "FORBIDDEN_ORIGIN"},
		{name: "BFF delete, another origin", method: "DELETE", url: bff + "/" + unknown, header: http.Header{"Origin": {"https://evil.example"}}, status: 403, code: "FORBIDDEN_ORIGIN"},
		{name: "BFF create, over 64 KiB", method: "POST", url: bff, body: big, status: 413, code: "BODY_TOO_LARGE"},
		{name: "backend create, a key", method: "POST", url: v1, header: withOwner(http.Header{"Idempotency-Key": {"be-key-1"}}), body: `{"rows":10}`, status: 202, validRequest: true},
		{name: "backend create, the key again", method: "POST", url: v1, header: withOwner(http.Header{"Idempotency-Key": {"be-key-1"}}), body: `{"rows":10}`, status: 200, validRequest: true},
		{name: "backend create, the key with another body", method: "POST", url: v1, header: withOwner(http.Header{"Idempotency-Key": {"be-key-1"}}), body: `{"rows":10,"durationMs":1}`, status: 409, code: "IDEMPOTENCY_KEY_REUSED", validRequest: true},
		{name: "backend create, a key too long", method: "POST", url: v1, header: withOwner(http.Header{"Idempotency-Key": {strings.Repeat("k", 129)}}), body: `{"rows":10,"durationMs":0}`, status: 400, code: "INVALID_IDEMPOTENCY_KEY"},
		{name: "backend create, not JSON", method: "POST", url: v1, header: own, body: `nope`, status: 400, code: "INVALID_JSON"},
		{name: "backend create, text/plain", method: "POST", url: v1, header: withOwner(http.Header{"Content-Type": {"text/plain"}}), body: `{"rows":1,"durationMs":0}`, status: 415, code: "UNSUPPORTED_MEDIA_TYPE"},
		{name: "backend create, out of range", method: "POST", url: v1, header: own, body: `{"rows":1,"durationMs":0,"failAt":100}`, status: 422, code: "VALIDATION_FAILED"},
		{name: "backend create, a wrong type", method: "POST", url: v1, header: own, body: `{"rows":"many","durationMs":0}`, status: 422, code: "VALIDATION_FAILED"},
		{name: "backend create, over 1 MiB", method: "POST", url: v1, header: own, body: big, status: 413, code: "BODY_TOO_LARGE"},
		{name: "backend create, a bad owner", method: "POST", url: v1, header: http.Header{"X-Export-Owner": {strings.Repeat("o", 129)}}, body: `{"rows":1,"durationMs":0}`, status: 400, code: "INVALID_OWNER"},

		// list, get
		{name: "BFF list", method: "GET", url: bff, status: 200, validRequest: true},
		{name: "backend list", method: "GET", url: v1, header: own, status: 200, validRequest: true},
		{name: "backend list, a bad owner", method: "GET", url: v1, header: http.Header{"X-Export-Owner": {"two words"}}, status: 400, code: "INVALID_OWNER"},
		{name: "backend list, another owner", method: "GET", url: v1 + "?owner=someone-else", header: own, status: 200, validRequest: true},
		{name: "BFF get, running", method: "GET", url: bff + "/" + long.Code, status: 200, validRequest: true},
		{name: "BFF get, completed", method: "GET", url: bff + "/" + done.Code, status: 200, validRequest: true},
		{name: "BFF get, failed", method: "GET", url: bff + "/" + failed.Code, status: 200, validRequest: true},
		{name: "BFF get, not a code", method: "GET", url: bff + "/nope", status: 400, code: "INVALID_CODE"},
		{name: "BFF get, unknown", method: "GET", url: bff + "/" + unknown, status: 404, code: "NOT_FOUND", validRequest: true},
		{name: "backend get, forwarded prefix", method: "GET", url: v1 + "/" + doneV1.Code, header: withOwner(http.Header{"X-Forwarded-Prefix": {"/api"}}), status: 200, validRequest: true},
		{name: "backend get, not a code", method: "GET", url: v1 + "/nope", header: own, status: 400, code: "INVALID_CODE"},
		{name: "backend get, unknown", method: "GET", url: v1 + "/" + unknown, header: own, status: 404, code: "NOT_FOUND", validRequest: true},
		{name: "backend get, another owner's job", method: "GET", url: v1 + "/" + doneV1.Code, header: http.Header{"X-Export-Owner": {"someone-else"}}, status: 404, code: "NOT_FOUND", validRequest: true},

		// events errors
		{name: "BFF events, not a code", method: "GET", url: bff + "/nope/events", status: 400, code: "INVALID_CODE"},
		{name: "BFF events, unknown", method: "GET", url: bff + "/" + unknown + "/events", status: 404, code: "NOT_FOUND", validRequest: true},
		{name: "backend events, not a code", method: "GET", url: v1 + "/nope/events", header: own, status: 400, code: "INVALID_CODE"},
		{name: "backend events, unknown", method: "GET", url: v1 + "/" + unknown + "/events", header: own, status: 404, code: "NOT_FOUND", validRequest: true},

		// file
		{name: "BFF file", method: "GET", url: bff + "/" + done.Code + "/file", status: 200, validRequest: true},
		{name: "BFF file, a range", method: "GET", url: bff + "/" + done.Code + "/file", header: http.Header{"Range": {"bytes=100-199"}}, status: 206, validRequest: true},
		{name: "BFF file, a range past the end", method: "GET", url: bff + "/" + done.Code + "/file", header: http.Header{"Range": {past}}, status: 416, validRequest: true},
		{name: "BFF file, not modified", method: "GET", url: bff + "/" + done.Code + "/file", header: http.Header{"If-None-Match": {etag}}, status: 304, validRequest: true},
		{name: "BFF file, not ready", method: "GET", url: bff + "/" + long.Code + "/file", status: 409, code: "NOT_READY", validRequest: true},
		{name: "BFF file, of a failed job", method: "GET", url: bff + "/" + failed.Code + "/file", status: 409, code: "NOT_READY", validRequest: true},
		{name: "BFF file, not a code", method: "GET", url: bff + "/nope/file", status: 400, code: "INVALID_CODE"},
		{name: "BFF file, unknown", method: "GET", url: bff + "/" + unknown + "/file", status: 404, code: "NOT_FOUND", validRequest: true},
		{name: "backend file", method: "GET", url: v1 + "/" + doneV1.Code + "/file", header: own, status: 200, validRequest: true},
		{name: "backend file, a range", method: "GET", url: v1 + "/" + doneV1.Code + "/file", header: withOwner(http.Header{"Range": {"bytes=-100"}}), status: 206, validRequest: true},
		{name: "backend file, a range past the end", method: "GET", url: v1 + "/" + doneV1.Code + "/file", header: withOwner(http.Header{"Range": {"bytes=99999999-"}}), status: 416, validRequest: true},
		{name: "backend file, not modified", method: "GET", url: v1 + "/" + doneV1.Code + "/file", header: withOwner(http.Header{"If-None-Match": {`"` + doneV1Job.File.SHA256 + `"`}}), status: 304, validRequest: true},
		{name: "backend file, not ready", method: "GET", url: v1 + "/" + longV1.Code + "/file", header: own, status: 409, code: "NOT_READY", validRequest: true},
		{name: "backend file, not a code", method: "GET", url: v1 + "/nope/file", header: own, status: 400, code: "INVALID_CODE"},
		{name: "backend file, unknown", method: "GET", url: v1 + "/" + unknown + "/file", header: own, status: 404, code: "NOT_FOUND", validRequest: true},

		// DELETE: cancel the running, delete the ended
		{name: "BFF cancel", method: "DELETE", url: bff + "/" + long.Code, status: 200, validRequest: true},
		{name: "BFF delete the cancelled", method: "DELETE", url: bff + "/" + long.Code, status: 204, validRequest: true},
		{name: "BFF delete, gone", method: "DELETE", url: bff + "/" + long.Code, status: 404, code: "NOT_FOUND", validRequest: true},
		{name: "BFF delete, not a code", method: "DELETE", url: bff + "/nope", status: 400, code: "INVALID_CODE"},
		{name: "BFF delete a completed", method: "DELETE", url: bff + "/" + done.Code, status: 204, validRequest: true},
		{name: "BFF get the deleted", method: "GET", url: bff + "/" + done.Code, status: 404, code: "NOT_FOUND", validRequest: true},
		{name: "backend cancel", method: "DELETE", url: v1 + "/" + longV1.Code, header: own, status: 200, validRequest: true},
		{name: "backend delete a completed", method: "DELETE", url: v1 + "/" + doneV1.Code, header: own, status: 204, validRequest: true},
		{name: "backend delete, unknown", method: "DELETE", url: v1 + "/" + unknown, header: own, status: 404, code: "NOT_FOUND", validRequest: true},
		{name: "backend delete, not a code", method: "DELETE", url: v1 + "/nope", header: own, status: 400, code: "INVALID_CODE"},

		// operations and the page
		{name: "BFF healthz", method: "GET", url: bffURL + "/healthz", status: 200, validRequest: true},
		{name: "BFF readyz", method: "GET", url: bffURL + "/readyz", status: 200, validRequest: true},
		{name: "BFF metrics", method: "GET", url: bffURL + "/metrics", status: 200, validRequest: true},
		{name: "BFF demo page", method: "GET", url: bffURL + "/", status: 200, validRequest: true},
		{name: "backend healthz", method: "GET", url: be.url + "/healthz", status: 200, validRequest: true},
		{name: "backend readyz", method: "GET", url: be.url + "/readyz", status: 200, validRequest: true},
		{name: "backend metrics", method: "GET", url: be.url + "/metrics", status: 200, validRequest: true},
	})

	t.Run("a cancelled job's stream", func(t *testing.T) {
		j := c.create(t, bff, `{"rows":1000,"durationMs":60000}`, nil)
		cancel := func() { // once the stream is open, so that it sees the change
			c.do(t, apiCase{method: "DELETE", url: bff + "/" + j.Code, status: http.StatusOK, validRequest: true})
		}
		evs := c.events(t, apiCase{method: "GET", url: bff + "/" + j.Code + "/events", status: 200, validRequest: true, afterFirst: cancel})
		if last := evs[len(evs)-1].job.Status; last != "CANCELLED" {
			t.Errorf("the stream of a cancelled job ended %s", last)
		}
	})
}

func testOpenAPIServiceTokenAndBackendOutage(t *testing.T) {
	be := startBackend(t, "-service-token", "s3cret")
	good := startBFFWithToken(t, be.url, 5*time.Second, "s3cret")
	bad := startBFFWithToken(t, be.url, 5*time.Second, "wrong")
	c := loadContract(t, good, be.url)
	c.run(t, []apiCase{
		{name: "no token, list", method: "GET", url: be.url + "/v1/exports", status: 401, code: "UNAUTHORIZED"},
		{name: "no token, create", method: "POST", url: be.url + "/v1/exports", body: `{"rows":1,"durationMs":0}`, status: 401, code: "UNAUTHORIZED"},
		{name: "no token, get", method: "GET", url: be.url + "/v1/exports/" + unknownCode, status: 401, code: "UNAUTHORIZED"},
		{name: "no token, delete", method: "DELETE", url: be.url + "/v1/exports/" + unknownCode, status: 401, code: "UNAUTHORIZED"},
		{name: "no token, events", method: "GET", url: be.url + "/v1/exports/" + unknownCode + "/events", status: 401, code: "UNAUTHORIZED"},
		{name: "no token, file", method: "GET", url: be.url + "/v1/exports/" + unknownCode + "/file", status: 401, code: "UNAUTHORIZED"},
		{name: "a wrong token", method: "GET", url: be.url + "/v1/exports", header: http.Header{"Authorization": {"Bearer nope"}}, status: 401, code: "UNAUTHORIZED"},
		{name: "the token", method: "GET", url: be.url + "/v1/exports", header: http.Header{"Authorization": {"Bearer s3cret"}}, status: 200, validRequest: true},
		{name: "through the BFF", method: "GET", url: good + "/api/exports", status: 200, validRequest: true},
	})
	j := c.create(t, good+"/api/exports", `{"rows":10,"durationMs":0}`, nil)

	// The same document routes the BFF with the wrong token.
	c2 := loadContract(t, bad, be.url)
	c2.run(t, []apiCase{
		{name: "BFF with a rejected token, create", method: "POST", url: bad + "/api/exports", body: `{"rows":1,"durationMs":0}`, status: 502, code: "BACKEND_UNAVAILABLE", validRequest: true},
		{name: "BFF with a rejected token, list", method: "GET", url: bad + "/api/exports", status: 502, code: "BACKEND_UNAVAILABLE", validRequest: true},
	})
	t.Run("BFF with a rejected token, events", func(t *testing.T) {
		evs := c2.events(t, apiCase{method: "GET", url: bad + "/api/exports/" + j.Code + "/events", status: 200, validRequest: true})
		if last := evs[len(evs)-1].job; last.Status != "ERROR" {
			t.Errorf("events through a BFF with a rejected token ended %s, want ERROR", last.Status)
		}
	})

	// The backend goes away: 502 from the BFF, ERROR on its streams.
	down := startBackend(t)
	bff := startBFF(t, down.url, 300*time.Millisecond)
	c3 := loadContract(t, bff, down.url)
	running := c3.create(t, bff+"/api/exports", `{"rows":1000,"durationMs":60000}`, nil)
	_ = down.cmd.Process.Kill()
	_ = down.cmd.Wait()
	c3.run(t, []apiCase{
		{name: "BFF create, backend down", method: "POST", url: bff + "/api/exports", body: `{"rows":1,"durationMs":0}`, status: 502, code: "BACKEND_UNAVAILABLE", validRequest: true},
		{name: "BFF get, backend down", method: "GET", url: bff + "/api/exports/" + running.Code, status: 502, code: "BACKEND_UNAVAILABLE", validRequest: true},
		{name: "BFF file, backend down", method: "GET", url: bff + "/api/exports/" + running.Code + "/file", status: 502, code: "BACKEND_UNAVAILABLE", validRequest: true},
		{name: "BFF delete, backend down", method: "DELETE", url: bff + "/api/exports/" + running.Code, status: 502, code: "BACKEND_UNAVAILABLE", validRequest: true},
		{name: "BFF session stream, backend down", method: "GET", url: bff + "/api/events", status: 502, code: "BACKEND_UNAVAILABLE", validRequest: true},
	})
	t.Run("BFF events, backend down", func(t *testing.T) {
		evs := c3.events(t, apiCase{method: "GET", url: bff + "/api/exports/" + running.Code + "/events", status: 200, validRequest: true})
		if last := evs[len(evs)-1].job; last.Status != "ERROR" {
			t.Errorf("events with the backend down ended %s, want ERROR", last.Status)
		}
	})
}

func testOpenAPILimitsAndRetention(t *testing.T) {
	t.Run("too many active", func(t *testing.T) {
		be := startBackend(t, "-max-active-per-owner", "1")
		bff := startBFF(t, be.url, 5*time.Second)
		c := loadContract(t, bff, be.url)
		c.create(t, bff+"/api/exports", `{"rows":1000,"durationMs":60000}`, nil)
		c.create(t, be.url+"/v1/exports", `{"rows":1000,"durationMs":60000}`, http.Header{"X-Export-Owner": {owner}})
		c.run(t, []apiCase{
			{name: "BFF", method: "POST", url: bff + "/api/exports", body: `{"rows":1,"durationMs":0}`, status: 429, code: "TOO_MANY_ACTIVE", validRequest: true},
			{name: "backend", method: "POST", url: be.url + "/v1/exports", header: http.Header{"X-Export-Owner": {owner}}, body: `{"rows":1,"durationMs":0}`, status: 429, code: "TOO_MANY_ACTIVE", validRequest: true},
		})
	})
	t.Run("scenarios off", func(t *testing.T) {
		be := startBackend(t, "-scenarios", "off")
		bff := startBFF(t, be.url, 5*time.Second)
		c := loadContract(t, bff, be.url)
		scripted := `{"rows":100,"durationMs":0,"failAt":50,"errorCode":"QUOTA_EXCEEDED"}`
		c.run(t, []apiCase{
			{name: "BFF", method: "POST", url: bff + "/api/exports", body: scripted, status: 400, code: "SCENARIOS_DISABLED", validRequest: true},
			{name: "BFF tab stream fault", method: "GET", url: bff + "/api/events?fault=relay-gives-up", status: 400, code: "SCENARIOS_DISABLED", validRequest: true},
			{name: "backend", method: "POST", url: be.url + "/v1/exports", header: http.Header{"X-Export-Owner": {owner}}, body: `{"rows":100,"startDelayMs":10,"stallAt":5,"stallMs":5,"expireAfterMs":5,"rowsPerSecond":100}`, status: 400, code: "SCENARIOS_DISABLED", validRequest: true},
		})
	})
	t.Run("queue full", func(t *testing.T) {
		be := startBackend(t, "-workers", "1", "-queue-size", "1", "-max-active-per-owner", "0")
		bff := startBFF(t, be.url, 5*time.Second)
		c := loadContract(t, bff, be.url)
		first := c.create(t, bff+"/api/exports", `{"rows":1000,"durationMs":60000}`, nil)
		// The one worker has taken it from the queue once it is IN_PROGRESS.
		c.waitUntil(t, bff+"/api/exports/"+first.Code, "IN_PROGRESS", func(j specJob) bool { return j.Status == "IN_PROGRESS" })
		c.create(t, bff+"/api/exports", `{"rows":1000,"durationMs":60000}`, nil) // fills the queue of 1
		c.run(t, []apiCase{
			{name: "BFF", method: "POST", url: bff + "/api/exports", body: `{"rows":1,"durationMs":0}`, status: 503, code: "QUEUE_FULL", validRequest: true},
			{name: "backend", method: "POST", url: be.url + "/v1/exports", body: `{"rows":1,"durationMs":0}`, status: 503, code: "QUEUE_FULL", validRequest: true},
		})
	})
	t.Run("stream limits and shutdown", func(t *testing.T) {
		be := startBackend(t)
		client, err := backend.New(be.url, "")
		if err != nil {
			t.Fatal(err)
		}
		bff, api := startBFFServer(t, client, nil, func(_ *relay.Config, h *httpapi.Config) { h.MaxStreamsPerSession, h.MaxStreams = 1, 2 })
		long := `{"rows":1000,"durationMs":60000}`
		// One browser holds its one stream; its second gets 429.
		a := loadContract(t, bff, be.url)
		ja := a.create(t, bff+"/api/exports", long, nil)
		a.open(t, apiCase{method: "GET", url: bff + "/api/events", status: 200, validRequest: true})
		a.run(t, []apiCase{
			{name: "a session's second tab stream", method: "GET", url: bff + "/api/events", status: 429, code: "TOO_MANY_STREAMS", validRequest: true},
			{name: "a session's second job stream", method: "GET", url: bff + "/api/exports/" + ja.Code + "/events", status: 429, code: "TOO_MANY_STREAMS", validRequest: true},
		})
		// Another takes the server's last stream; a third browser gets 503.
		b := loadContract(t, bff, be.url)
		jb := b.create(t, bff+"/api/exports", long, nil)
		b.open(t, apiCase{method: "GET", url: bff + "/api/exports/" + jb.Code + "/events", status: 200, validRequest: true})
		c := loadContract(t, bff, be.url)
		jc := c.create(t, bff+"/api/exports", long, nil)
		c.run(t, []apiCase{
			{name: "a tab stream past the server's limit", method: "GET", url: bff + "/api/events", status: 503, code: "TOO_MANY_STREAMS", validRequest: true},
			{name: "a job stream past the server's limit", method: "GET", url: bff + "/api/exports/" + jc.Code + "/events", status: 503, code: "TOO_MANY_STREAMS", validRequest: true},
		})
		// Shutting down, the BFF is no longer ready.
		api.CloseStreams()
		c.run(t, []apiCase{
			{name: "readyz while shutting down", method: "GET", url: bff + "/readyz", status: 503, code: "UNAVAILABLE", validRequest: true},
		})
	})
	t.Run("limits per client address", func(t *testing.T) {
		be := startBackend(t)
		client, err := backend.New(be.url, "")
		if err != nil {
			t.Fatal(err)
		}
		bff, _ := startBFFServer(t, client, nil, func(_ *relay.Config, h *httpapi.Config) {
			h.AddressSessionRate, h.AddressSessionBurst = 0.001, 1
			h.AddressCreateRate, h.AddressCreateBurst = 0.001, 1
			h.MaxStreamsPerAddress = 1
		})
		// One browser takes the address's one new session, one create and
		// one stream; its second create and stream are refused, and so is a
		// second browser's first request (it would start a session).
		a := loadContract(t, bff, be.url)
		ja := a.create(t, bff+"/api/exports", `{"rows":1000,"durationMs":60000}`, nil)
		a.open(t, apiCase{method: "GET", url: bff + "/api/events", status: 200, validRequest: true})
		a.run(t, []apiCase{
			{name: "the address's second create", method: "POST", url: bff + "/api/exports", body: `{"rows":1,"durationMs":0}`, status: 429, code: "TOO_MANY_REQUESTS", validRequest: true},
			{name: "the address's second job stream", method: "GET", url: bff + "/api/exports/" + ja.Code + "/events", status: 429, code: "TOO_MANY_STREAMS", validRequest: true},
		})
		b := loadContract(t, bff, be.url)
		b.run(t, []apiCase{
			{name: "the address's second session, listing", method: "GET", url: bff + "/api/exports", status: 429, code: "TOO_MANY_SESSIONS", validRequest: true},
			{name: "the address's second session, streaming", method: "GET", url: bff + "/api/events", status: 429, code: "TOO_MANY_SESSIONS", validRequest: true},
			{name: "the address's second session, creating", method: "POST", url: bff + "/api/exports", body: `{"rows":1,"durationMs":0}`, status: 429, code: "TOO_MANY_SESSIONS", validRequest: true},
		})
	})
	t.Run("gone after retention", func(t *testing.T) {
		be := startBackend(t, "-retention", "1s")
		bff := startBFF(t, be.url, 5*time.Second)
		c := loadContract(t, bff, be.url)
		own := http.Header{"X-Export-Owner": {owner}}
		j := c.create(t, bff+"/api/exports", `{"rows":10,"durationMs":0}`, nil)
		jV1 := c.create(t, be.url+"/v1/exports", `{"rows":10,"durationMs":0}`, own)
		c.waitFor(t, bff+"/api/exports/"+j.Code)
		c.waitFor(t, be.url+"/v1/exports/"+jV1.Code)
		// Retention deletes it about a second after it ended.
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, be.url+"/v1/exports/"+jV1.Code, nil)
			req.Header.Set("X-Export-Owner", owner)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusNotFound {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		c.run(t, []apiCase{
			{name: "BFF file", method: "GET", url: bff + "/api/exports/" + j.Code + "/file", status: 410, code: "GONE", validRequest: true},
			{name: "backend file", method: "GET", url: be.url + "/v1/exports/" + jV1.Code + "/file", header: own, status: 410, code: "GONE", validRequest: true},
		})
	})
}
