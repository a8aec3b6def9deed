package main

import (
	"context"
	"math"
	"testing"
)

// The floor counts every write, and charges the readers' CPU only when
// the peers read (then after they have every byte).
func TestTheFloorWritesToEverySocketAndTimesTheReadersOnlyWhenThereAreSome(t *testing.T) {
	for _, reading := range []bool{false, true} {
		m, err := floorWrites(context.Background(), 10, 3, 300, reading)
		if err != nil {
			t.Fatalf("reading %v: %v", reading, err)
		}
		if m["writes"] != 30 {
			t.Errorf("reading %v: %v writes, want 30", reading, m["writes"])
		}
		if got := math.IsNaN(m["readers' CPU µs/write"]); got == reading {
			t.Errorf("reading %v: readers' CPU %v", reading, m["readers' CPU µs/write"])
		}
	}
}
