package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

// testdata/osv holds two entries copied unchanged from golang.org/x/vulndb's
// data/osv: GO-2022-0969 (net/http and golang.org/x/net/http2, two ranges
// for the standard library) and GO-2021-0113 (golang.org/x/text/language).
func TestGenerateWritesTheV1Layout(t *testing.T) {
	at := time.Date(2026, 11, 5, 23, 49, 57, 0, time.UTC)
	out := filepath.Join(t.TempDir(), "db")
	n, err := generate("testdata/osv", out, at)
	if err != nil || n != 2 {
		t.Fatalf("generate = %d, %v; want 2 entries", n, err)
	}

	var db map[string]time.Time
	readJSON(t, filepath.Join(out, "index", "db.json"), &db)
	if !db["modified"].Equal(at) {
		t.Errorf("db.json modified = %v, want %v", db["modified"], at)
	}

	var modules []moduleMeta
	readJSON(t, filepath.Join(out, "index", "modules.json"), &modules)
	want := []moduleMeta{
		{Path: "golang.org/x/net", Vulns: []moduleVuln{{ID: "GO-2022-0969", Modified: at, Fixed: "0.0.0-20220906165146-f3363e06e74c"}}},
		{Path: "golang.org/x/text", Vulns: []moduleVuln{{ID: "GO-2021-0113", Modified: at, Fixed: "0.3.7"}}},
		{Path: "stdlib", Vulns: []moduleVuln{{ID: "GO-2022-0969", Modified: at, Fixed: "1.19.1"}}},
	}
	if !reflect.DeepEqual(modules, want) {
		t.Errorf("modules.json = %+v\nwant %+v", modules, want)
	}

	var vulns []vuln
	readJSON(t, filepath.Join(out, "index", "vulns.json"), &vulns)
	if len(vulns) != 2 || vulns[0].ID != "GO-2021-0113" || vulns[1].ID != "GO-2022-0969" ||
		!reflect.DeepEqual(vulns[1].Aliases, []string{"CVE-2022-27664", "GHSA-69cg-p879-7622"}) {
		t.Errorf("vulns.json = %+v", vulns)
	}

	// The entry is the source's, field for field, but for "modified".
	var got, src map[string]any
	readJSON(t, filepath.Join(out, "ID", "GO-2022-0969.json"), &got)
	readJSON(t, "testdata/osv/GO-2022-0969.json", &src)
	if got["modified"] != "2026-11-05T23:49:57Z" || got["published"] != "2022-09-12T20:23:06Z" {
		t.Errorf("entry modified, published = %v, %v", got["modified"], got["published"])
	}
	delete(got, "modified")
	delete(src, "modified")
	if !reflect.DeepEqual(got, src) {
		t.Errorf("entry changed beyond modified:\n%v\nwant %v", got, src)
	}

	// Again over the same directory: replaced, nothing left beside it.
	if _, err := generate("testdata/osv", out, at); err != nil {
		t.Fatal(err)
	}
	if left, _ := filepath.Glob(out + ".tmp-*"); len(left) > 0 {
		t.Errorf("temporary directories left: %v", left)
	}
}

func TestGenerateRefusesWhatGovulncheckCouldNotRead(t *testing.T) {
	if _, err := generate(t.TempDir(), filepath.Join(t.TempDir(), "db"), time.Now()); err == nil {
		t.Error("an empty source gave a database; want an error (an empty database finds nothing)")
	}
	dir := t.TempDir()
	b, err := os.ReadFile("testdata/osv/GO-2021-0113.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "GO-2099-0001.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := generate(dir, filepath.Join(t.TempDir(), "db"), time.Now()); err == nil {
		t.Error("an entry whose id is not its file name was taken; govulncheck looks entries up by file name")
	}
}

func TestLatestFixed(t *testing.T) {
	type ev = osvEvent
	semver := func(events ...ev) osvRange { return osvRange{Type: "SEMVER", Events: events} }
	for _, c := range []struct {
		name   string
		ranges []osvRange
		want   string
	}{
		{"no ranges", nil, ""},
		{"never fixed", []osvRange{semver(ev{Introduced: "0"})}, ""},
		{"one fix", []osvRange{semver(ev{Introduced: "0"}, ev{Fixed: "0.3.7"})}, "0.3.7"},
		{"two branches, the later fix", []osvRange{semver(ev{Introduced: "0"}, ev{Fixed: "1.18.6"}, ev{Introduced: "1.19.0-0"}, ev{Fixed: "1.19.1"})}, "1.19.1"},
		{"ranges out of order", []osvRange{semver(ev{Introduced: "1.19.0-0"}, ev{Fixed: "1.19.1"}), semver(ev{Introduced: "0"}, ev{Fixed: "1.18.6"})}, "1.19.1"},
		{"re-introduced after the fix", []osvRange{semver(ev{Introduced: "0"}, ev{Fixed: "1.5.0"}, ev{Introduced: "2.0.0"})}, ""},
		{"pseudo-versions", []osvRange{semver(ev{Introduced: "0"}, ev{Fixed: "0.0.0-20220906165146-f3363e06e74c"})}, "0.0.0-20220906165146-f3363e06e74c"},
		{"not SEMVER", []osvRange{{Type: "GIT"}}, ""},
	} {
		if got := latestFixed(c.ranges); got != c.want {
			t.Errorf("%s: latestFixed = %q, want %q", c.name, got, c.want)
		}
	}
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}
