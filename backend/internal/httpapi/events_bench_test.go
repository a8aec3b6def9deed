package httpapi

import (
	"bytes"
	"encoding/json"
	"strconv"
	"testing"
	"time"

	sse "github.com/tmaxmax/go-sse"

	"github.com/exportstream/exportstream/backend/internal/job"
)

// BenchmarkEventEncode: one job snapshot to the bytes of its SSE event, as
// the event stream does it for every watcher (JSON, then an sse.Message).
// BENCHMARKS.md at the root records the figures.
func BenchmarkEventEncode(b *testing.B) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC)
	snaps := map[string]job.Job{
		"progress": {Code: "6f1c0b1e-4b7a-4c55-9c1e-3f0a8d2b7c11", Status: job.StatusInProgress, Progress: 42,
			RowsDone: 4200, RowsTotal: 10000, Seq: 43, CreatedAt: at, UpdatedAt: at.Add(4 * time.Second)},
		"completed": {Code: "6f1c0b1e-4b7a-4c55-9c1e-3f0a8d2b7c11", Status: job.StatusCompleted, Progress: 100,
			RowsDone: 10000, RowsTotal: 10000, Seq: 101, CreatedAt: at, UpdatedAt: at.Add(10 * time.Second),
			File: &job.File{Name: "export-6f1c0b1e.csv", Size: 601234, SHA256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
				ContentType: "text/csv; charset=utf-8"}},
	}
	for name, snap := range snaps {
		b.Run(name, func(b *testing.B) {
			var out bytes.Buffer
			b.ReportAllocs()
			for b.Loop() {
				out.Reset()
				data, err := json.Marshal(present(snap, "/v1"))
				if err != nil {
					b.Fatal(err)
				}
				msg := &sse.Message{ID: sse.ID(strconv.FormatInt(snap.Seq, 10))}
				msg.AppendData(string(data))
				if _, err := msg.WriteTo(&out); err != nil {
					b.Fatal(err)
				}
			}
			b.SetBytes(int64(out.Len()))
		})
	}
}
