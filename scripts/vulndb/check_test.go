package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// govulncheck -format json, cut down: one entry found in the standard
// library and in golang.org/x/net (twice in each), one only imported.
const stream = `{"config":{"protocol_version":"v1.0.0","go_version":"go1.26.8"}}
{"osv":{"id":"GO-2026-6617","summary":"HTTP/2 server crash"}}
{"osv":{"id":"GO-2026-0001","summary":"imported, never called"}}
{"finding":{"osv":"GO-2026-0001","fixed_version":"v1.0.1","trace":[{"module":"example.com/m","version":"v1.0.0","package":"example.com/m/p"}]}}
{"finding":{"osv":"GO-2026-6617","fixed_version":"v0.60.0","trace":[{"module":"golang.org/x/net","version":"v0.59.0","package":"golang.org/x/net/http2","function":"Encode","receiver":"*Encoder"},{"module":"example.com/app","package":"example.com/app/internal/web","function":"Serve","position":{"filename":"internal/web/web.go","line":12}}]}}
{"finding":{"osv":"GO-2026-6617","fixed_version":"v0.60.0","trace":[{"module":"golang.org/x/net","version":"v0.59.0","package":"golang.org/x/net/http2","function":"Other"}]}}
{"finding":{"osv":"GO-2026-6617","fixed_version":"v1.26.9","trace":[{"module":"stdlib","version":"v1.26.8","package":"net/http","function":"Serve"}]}}
`

func TestParseKeepsOneReachableFindingPerEntryAndModule(t *testing.T) {
	r, err := parse(strings.NewReader(stream))
	if err != nil {
		t.Fatal(err)
	}
	want := []finding{
		{ID: "GO-2026-6617", Summary: "HTTP/2 server crash", Module: "golang.org/x/net", Version: "v0.59.0", Fixed: "v0.60.0",
			Trace: "internal/web/web.go:12: web.Serve → golang.org/x/net/http2.Encoder.Encode"},
		{ID: "GO-2026-6617", Summary: "HTTP/2 server crash", Module: "stdlib", Version: "go1.26.8", Fixed: "go1.26.9",
			Trace: "net/http.Serve"},
	}
	if r.GoVersion != "go1.26.8" || !slices.Equal(r.Findings, want) {
		t.Errorf("parse = %+v\nwant findings %+v", r, want)
	}
}

func TestAnAcceptanceCoversItsModuleOnly(t *testing.T) {
	r, err := parse(strings.NewReader(stream))
	if err != nil {
		t.Fatal(err)
	}
	r.Dir = "app"
	accepted := []acceptance{
		{ID: "GO-2026-6617", Module: "stdlib", Reason: "needs a newer Go"},
		{ID: "GO-2026-9999", Module: "stdlib", Reason: "fixed long ago"},
	}
	out, failed := report([]result{r}, accepted)
	if failed != 1 {
		t.Errorf("report failed %d findings, want 1 (golang.org/x/net's; the stdlib one is accepted):\n%s", failed, out)
	}
	for _, line := range []string{"FAIL", "accepted: needs a newer Go", "no longer found (remove it from the accept file): GO-2026-9999 stdlib"} {
		if !strings.Contains(out, line) {
			t.Errorf("report lacks %q:\n%s", line, out)
		}
	}
}

func TestTheAcceptFileReads(t *testing.T) {
	accepted, err := readAccepted("accepted.txt")
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range accepted {
		if a.Module != "stdlib" {
			t.Errorf("%s accepted in %s: only the standard library waits for a new Go; bump the module instead", a.ID, a.Module)
		}
	}
	bad := filepath.Join(t.TempDir(), "accepted.txt")
	if err := os.WriteFile(bad, []byte("GO-2026-6617 stdlib\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := readAccepted(bad); err == nil {
		t.Error("a line without a reason was taken")
	}
}

// The tests below need the real database and govulncheck, which `make
// vulncheck` builds and passes in VULNDB_DIR and GOVULNCHECK.

func realDB(t *testing.T) string {
	dir := os.Getenv("VULNDB_DIR")
	if dir == "" {
		t.Skip("VULNDB_DIR unset: `make vulncheck` runs this test with the generated database")
	}
	return dir
}

func TestTheGeneratedDatabaseHoldsTheEntries(t *testing.T) {
	dir := realDB(t)
	var vulns []vuln
	readJSON(t, filepath.Join(dir, "index", "vulns.json"), &vulns)
	ids, err := filepath.Glob(filepath.Join(dir, "ID", "GO-*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(vulns) < 4000 || len(ids) != len(vulns) {
		t.Errorf("%d entries in vulns.json, %d in ID/; want the same, and thousands", len(vulns), len(ids))
	}
	var modules []moduleMeta
	readJSON(t, filepath.Join(dir, "index", "modules.json"), &modules)
	found := false
	for _, m := range modules {
		for _, v := range m.Vulns {
			found = found || m.Path == "stdlib" && v.ID == "GO-2022-0969" && v.Fixed == "1.19.1"
		}
	}
	if !found {
		t.Error(`modules.json has no GO-2022-0969 (net/http, fixed in 1.19.1) under "stdlib"`)
	}
	if _, err := os.Stat(filepath.Join(dir, "ID", "GO-2022-0969.json")); err != nil {
		t.Error(err)
	}
}

// The check fails on a module that calls golang.org/x/text v0.3.5's
// language.Parse, and only an acceptance for that module lets it pass.
func TestTheCheckFailsOnAVulnerableFixture(t *testing.T) {
	dir := realDB(t)
	bin := os.Getenv("GOVULNCHECK")
	if bin == "" {
		t.Skip("GOVULNCHECK unset: `make vulncheck` runs this test with the govulncheck it builds")
	}
	results, err := scan(bin, dir, []string{"testdata/vulnerable"})
	if err != nil {
		t.Fatal(err)
	}
	out, _ := report(results, nil)
	t.Logf("\n%s", out)
	i := slices.IndexFunc(results[0].Findings, func(f finding) bool { return f.ID == "GO-2021-0113" })
	if i < 0 {
		t.Fatal("GO-2021-0113 (golang.org/x/text/language.Parse) not found")
	}
	f := results[0].Findings[i]
	if f.Module != "golang.org/x/text" || f.Version != "v0.3.5" || f.Fixed != "v0.3.7" || !strings.Contains(f.Trace, "vulnerable.main → golang.org/x/text/language.Parse") {
		t.Errorf("finding = %+v", f)
	}
	accepted, err := readAccepted("accepted.txt")
	if err != nil {
		t.Fatal(err)
	}
	if _, failed := report(results, accepted); failed == 0 {
		t.Error("the check passed with the project's accept file")
	}
	if _, ok := acceptedFor([]acceptance{{ID: "GO-2021-0113", Module: "stdlib"}}, f); ok {
		t.Error("an acceptance for stdlib covered golang.org/x/text")
	}
}
