package campaign

import (
	"log/slog"
	"os"
	"path/filepath"
	"testing"
)

func TestStartStackReturnsItsErrorWhenTheRunCannotStart(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	// A run directory under a regular file: its logs directory cannot be made.
	s, err := StartStack(t.Context(), StackConfig{Topology: TopologyB, Dir: filepath.Join(file, "run"), Log: slog.New(slog.DiscardHandler)})
	if err == nil || s != nil {
		t.Fatalf("StartStack = %v, %v; want no stack and an error", s, err)
	}
}
