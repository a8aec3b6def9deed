// Package testenv is the one rule for a test that finds a system component
// missing (redis-server, a tmpfs mount, /proc, enough file descriptors):
// outside CI it skips, loudly; under CI it fails, since a suite that skips
// there proves nothing.
//
// CI is on when the environment variable CI is exactly "true" (what GitHub
// Actions, GitLab CI and .ci/run set); any other value, "1" included, is
// not CI. The TypeScript tests apply the same rule (inCI in client/test;
// TestTheTypeScriptTestsApplyTheSameRule checks it).
package testenv

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
)

// loud is where a skip is announced, past go test's quiet output.
var loud io.Writer = os.Stderr

// InCI reports whether this runs under CI, where a missing component is a
// failure.
func InCI() bool { return os.Getenv("CI") == "true" }

// Missing skips t with a loud "MISSING COMPONENT" message naming what is
// missing, or fails t with it under CI.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := "MISSING COMPONENT: " + fmt.Sprintf(format, args...)
	if InCI() {
		t.Fatal(msg + " (CI=true: a missing component fails)")
		return
	}
	bar := strings.Repeat("!", 72)
	_, _ = fmt.Fprintf(loud, "\n%s\n%s\n%s\n", bar, msg, bar)
	t.Skip(msg)
}

// Slow marks a test that spends seconds of real time (a give-up window, a
// lock timeout, a heartbeat gap): `make check` runs the tests with -short
// and skips it, `make test` runs it.
func Slow(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("slow: -short (make check) skips it; make test runs it")
	}
}

// LogBuffer is a log destination a test reads while the code under test
// writes to it from other goroutines.
type LogBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String is everything written so far.
func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
