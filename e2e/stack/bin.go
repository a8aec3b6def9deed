package stack

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
)

// BinDirEnv names a directory holding the backend and bff binaries (make
// build-go's bin/): set, the tests run those instead of building their own.
const BinDirEnv = "EXPORTSTREAM_BIN_DIR"

var (
	buildOnce sync.Once
	binDir    string
	builtDir  string // a directory Main removes
	buildErr  error
)

// Main runs a test binary's tests (call it from TestMain) and then removes
// the binaries it built.
func Main(m *testing.M) {
	code := m.Run()
	if builtDir != "" {
		_ = os.RemoveAll(builtDir)
	}
	os.Exit(code)
}

// Bin is the path of the binary name ("backend" or "bff"): from
// EXPORTSTREAM_BIN_DIR, or built once per test binary from this checkout.
func Bin(tb testing.TB, name string) string {
	tb.Helper()
	buildOnce.Do(build)
	if buildErr != nil {
		tb.Fatal(buildErr)
	}
	return filepath.Join(binDir, name)
}

func build() {
	if binDir = os.Getenv(BinDirEnv); binDir != "" {
		return
	}
	if builtDir, buildErr = os.MkdirTemp("", "exportstream-bin-"); buildErr != nil {
		return
	}
	binDir = builtDir
	buildErr = Build(context.Background(), binDir)
}

// Build builds this checkout's backend and bff into dir, each from its own
// module (GOWORK=off builds them too), with env added to the go command's
// (CGO_ENABLED=0 builds them as shipped); its output goes to stderr.
func Build(ctx context.Context, dir string, env ...string) error {
	_, file, _, _ := runtime.Caller(0) // <root>/e2e/stack/bin.go
	root := filepath.Join(filepath.Dir(file), "..", "..")
	for _, name := range []string{"backend", "bff"} {
		cmd := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(dir, name), "./cmd/"+name)
		cmd.Dir = filepath.Join(root, name)
		cmd.Env = append(os.Environ(), env...)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("build %s: %w", name, err)
		}
	}
	return nil
}
