package job_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/exportstream/exportstream/backend/internal/job"
)

// fixtureDir holds the job JSON that the Go types, the TypeScript client's
// types (client/test/fixtures.test-d.ts) and docs/openapi.yaml are all
// checked against, so none of them can rename or drop a field alone.
const fixtureDir = "../../../docs/fixtures"

func jobFixtures(t *testing.T) map[string][]byte {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(fixtureDir, "job-*.json"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no job fixtures in %s: %v", fixtureDir, err)
	}
	out := map[string][]byte{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		out[filepath.Base(p)] = b
	}
	return out
}

func TestJobFixturesRoundTripThroughTheJobType(t *testing.T) {
	statuses := map[job.Status]bool{}
	for name, fixture := range jobFixtures(t) {
		t.Run(name, func(t *testing.T) {
			dec := json.NewDecoder(bytes.NewReader(fixture))
			dec.DisallowUnknownFields()
			var j job.Job
			if err := dec.Decode(&j); err != nil {
				t.Fatalf("decode into job.Job: %v", err)
			}
			statuses[j.Status] = true
			if (j.File != nil) != (j.Status == job.StatusCompleted) || (j.Error != nil) != (j.Status == job.StatusFailed) {
				t.Errorf("%s: file %v, error %v: want a file exactly when COMPLETED, an error exactly when FAILED", j.Status, j.File != nil, j.Error != nil)
			}
			encoded, err := json.Marshal(j)
			if err != nil {
				t.Fatal(err)
			}
			var got, want any
			if err := json.Unmarshal(encoded, &got); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(fixture, &want); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("job.Job encodes the fixture differently:\n got %s\nwant %s", encoded, bytes.Join(bytes.Fields(fixture), nil))
			}
		})
	}
	for _, s := range []job.Status{job.StatusPending, job.StatusInProgress, job.StatusCompleted, job.StatusFailed, job.StatusCancelled} {
		if !statuses[s] {
			t.Errorf("no fixture for status %s", s)
		}
	}
}

// TestJobFixturesCoverEveryJSONField catches a field added to the Go types
// (even with omitempty, which the round trip would not notice) that no
// fixture, and so neither the client's types nor the document, knows of.
func TestJobFixturesCoverEveryJSONField(t *testing.T) {
	seen := map[string]bool{} // "job.rowsDone", "file.sha256", "error.code"
	for _, fixture := range jobFixtures(t) {
		var m map[string]any
		if err := json.Unmarshal(fixture, &m); err != nil {
			t.Fatal(err)
		}
		for k, v := range m {
			seen["job."+k] = true
			if sub, ok := v.(map[string]any); ok {
				for sk := range sub {
					seen[k+"."+sk] = true
				}
			}
		}
	}
	var missing []string
	for prefix, typ := range map[string]reflect.Type{
		"job":   reflect.TypeFor[job.Job](),
		"file":  reflect.TypeFor[job.File](),
		"error": reflect.TypeFor[job.Failure](),
	} {
		for f := range typ.Fields() {
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "-" || !f.IsExported() {
				continue
			}
			if name == "" {
				name = f.Name
			}
			if !seen[prefix+"."+name] {
				missing = append(missing, prefix+"."+name)
			}
		}
	}
	slices.Sort(missing)
	if len(missing) > 0 {
		t.Errorf("JSON fields of the Go types that no fixture in %s has: %v", fixtureDir, missing)
	}
}
