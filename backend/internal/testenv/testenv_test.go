package testenv

import (
	"bytes"
	"fmt"
	"os"
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

// TestTheRuleIsTheSameEverywhere: the bff and bench modules hold copies of
// this package (they share no module to import it from), and the
// TypeScript tests state the same rule.
func TestTheRuleIsTheSameEverywhere(t *testing.T) {
	this, err := os.ReadFile("testenv.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"../../../bff/internal/testenv/testenv.go", "../../../bench/internal/testenv/testenv.go"} {
		other, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(this, other) {
			t.Errorf("%s differs from backend/internal/testenv/testenv.go: keep the copies identical", path)
		}
	}
	const rule = `export const inCI = process.env["CI"] === "true";`
	servers, err := os.ReadFile("../../../client/test/servers.ts")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(servers, []byte(rule)) {
		t.Errorf("client/test/servers.ts does not say %s: the TypeScript tests must apply the same rule", rule)
	}
}
