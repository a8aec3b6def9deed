package exportfile_test

import (
	"bytes"
	"crypto/sha256"
	"io"
	"testing"

	"github.com/exportstream/exportstream/internal/exportfile"
)

// A generator writes a chunk per progress step, often a single row: each
// call must not cost a fresh 64 KiB buffer (the GC then took most of the
// backend's CPU with 1,000 exports generating, BENCHMARKS.md).
func TestWritingAChunkOfRowsAllocatesNothing(t *testing.T) {
	const code = "6f1c0b1e-4b7a-4c55-9c1e-3f0a8d2b7c11"
	if n := testing.AllocsPerRun(100, func() { _ = exportfile.WriteRows(io.Discard, code, 10, 12) }); n != 0 {
		t.Errorf("WriteRows of 2 rows: %v allocations, want 0", n)
	}
}

// However the rows are cut into chunks, the file is the same.
func TestChunkedRowsMakeTheSameFile(t *testing.T) {
	const code, rows = "6f1c0b1e-4b7a-4c55-9c1e-3f0a8d2b7c11", 5000
	var whole, chunked bytes.Buffer
	if err := exportfile.WriteRows(&whole, code, 0, rows); err != nil {
		t.Fatal(err)
	}
	for from := 0; from < rows; from += 7 {
		if err := exportfile.WriteRows(&chunked, code, from, min(from+7, rows)); err != nil {
			t.Fatal(err)
		}
	}
	if sha256.Sum256(whole.Bytes()) != sha256.Sum256(chunked.Bytes()) || whole.Len() < rows*40 {
		t.Errorf("chunked file (%d bytes) differs from the whole one (%d bytes)", chunked.Len(), whole.Len())
	}
}

// The format is a contract: the TypeScript tests and the fault campaign
// recompute files from it. This digest of a 3-row file was computed from
// the formula in AppendRow's comment, outside Go.
func TestSHA256IsTheDocumentedFormat(t *testing.T) {
	const code = "6f1c0b1e-4b7a-4c55-9c1e-3f0a8d2b7c11"
	if got, want := exportfile.SHA256(code, 3), "ed8d5c41e90cf3e8e8a7b4f1c7418ff73505beb198fa9306e458a5457cb2e6bf"; got != want {
		t.Errorf("SHA256(%s, 3) = %s, want %s", code, got, want)
	}
}
