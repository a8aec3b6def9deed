package testenv

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestInCIOnlyWhenCIIsExactlyTrue(t *testing.T) {
	for value, want := range map[string]bool{"true": true, "": false, "1": false, "TRUE": false, "yes": false, "false": false} {
		t.Setenv("CI", value)
		if got := InCI(); got != want {
			t.Errorf("CI=%q: InCI() = %v, want %v", value, got, want)
		}
	}
}

// tb records what Missing does to a test.
type tb struct {
	testing.TB
	fatal, skip string
}

func (r *tb) Helper()           {}
func (r *tb) Fatal(args ...any) { r.fatal = fmt.Sprint(args...) }
func (r *tb) Skip(args ...any)  { r.skip = fmt.Sprint(args...) }

func TestAMissingComponentFailsUnderCIAndSkipsLoudlyElsewhere(t *testing.T) {
	t.Setenv("CI", "true")
	var r tb
	Missing(&r, "redis-server %s", "(apt-get install redis-server)")
	if !strings.HasPrefix(r.fatal, "MISSING COMPONENT: redis-server (apt-get install redis-server)") || r.skip != "" {
		t.Errorf("under CI=true: failed with %q, skipped with %q; want a failure naming the component", r.fatal, r.skip)
	}
	t.Setenv("CI", "1")
	var banner bytes.Buffer
	loud = &banner // not on stderr: .ci/run fails a run that prints the marker
	defer func() { loud = os.Stderr }()
	r = tb{}
	Missing(&r, "redis-server")
	if r.skip != "MISSING COMPONENT: redis-server" || r.fatal != "" || !strings.Contains(banner.String(), "!!!\nMISSING COMPONENT: redis-server\n!!!") {
		t.Errorf("under CI=1: failed with %q, skipped with %q, announced %q; want a skip announced between bars", r.fatal, r.skip, banner.String())
	}
}

// TestTheTypeScriptTestsApplyTheSameRule: a missing component must mean the
// same in both languages' tests.
func TestTheTypeScriptTestsApplyTheSameRule(t *testing.T) {
	const rule = `export const inCI = process.env["CI"] === "true";`
	helpers, err := filepath.Glob("../../client/test/*.ts")
	if err != nil || len(helpers) == 0 {
		t.Fatalf("no TypeScript test files in client/test (%v)", err)
	}
	for _, path := range helpers {
		src, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(src, []byte(rule)) {
			return
		}
	}
	t.Errorf("no file in client/test says %s: the TypeScript tests must apply the same rule", rule)
}
