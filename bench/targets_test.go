package main

import (
	"strings"
	"testing"
)

// The relay's upstream count is met only at exactly one upstream for all
// the codes.
func TestTheRelayUpstreamTargetIsMetOnlyAtOneForAllTheCodes(t *testing.T) {
	for _, tt := range []struct {
		setup     string
		upstreams float64
		met       bool
	}{
		{"1000 subscribers on 10 codes (100 each)", 1, true},
		{"1000 subscribers on 10 codes (100 each)", 0, false},  // nothing relayed
		{"1000 subscribers on 10 codes (100 each)", 10, false}, // one per code
		{"1000 subscribers on 10 codes (100 each)", 2, false},  // a second upstream
	} {
		s := &Scenario{
			Name:  "relay: subscribers on a few codes, 10 events/s",
			Setup: tt.setup,
			Rows:  []*Row{{Target: "BFF (this project)", Metrics: map[string]float64{"upstream conns": tt.upstreams, "p99 ms": 1, "CPU µs/delivery": 1}}},
		}
		judge(s)
		var verdict string
		for _, v := range s.Verdicts {
			if strings.HasPrefix(v, "relay upstream connections: ") {
				verdict = v
			}
		}
		if got := strings.HasPrefix(verdict, "relay upstream connections: met "); got != tt.met || verdict == "" {
			t.Errorf("%v upstreams, setup %q: verdict %q, want met=%v", tt.upstreams, tt.setup, verdict, tt.met)
		}
	}
}
