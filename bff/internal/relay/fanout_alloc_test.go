package relay

import "testing"

// The allocation budget of the fan-out path, per delivered event: one
// event of the multiplexed stream parsed, routed, and queued for,
// signalled to and drained by every subscriber of its job.
//
// The budget is ≤ 1 allocation per delivered event (BENCHMARKS.md). The path does
// better, and this test holds it to what it does: 16 allocations per
// event of the stream (go-sse's parse, decoding the envelope's strings,
// t.latest = &ev), whatever the number of subscribers, and none per
// subscriber (the subscription swaps two queue slices on drain). At 100
// subscribers that is 0.16 per delivery.
const (
	fanOutSubscribers       = 100
	targetAllocsPerDelivery = 0.16
	budgetAllocsPerDelivery = 1.0
)

func TestFanOutAllocatesAtMostTheBudgetPerDeliveredEvent(t *testing.T) {
	if testing.Short() {
		t.Skip("allocation budget: not in -short")
	}
	f := newFanOut(t, fanOutSubscribers)
	fr := frames(1000)
	f.deliver(t, fr[0])
	i := 1
	// AllocsPerRun reports a whole number per event (it rounds down), so
	// per delivery the figure is a multiple of 1/fanOutSubscribers.
	perEvent := testing.AllocsPerRun(200, func() {
		f.deliver(t, fr[i])
		i++
	})
	perDelivery := perEvent / fanOutSubscribers
	t.Logf("%.2f allocs per event to %d subscribers = %.3f per delivery (asserted ≤ %.2f; the design's budget %.1f)", perEvent, fanOutSubscribers, perDelivery, targetAllocsPerDelivery, budgetAllocsPerDelivery)
	if perDelivery > targetAllocsPerDelivery {
		t.Fatalf("fan-out allocates %.3f times per delivered event (%.0f per event to %d subscribers), over the %.2f it is held to", perDelivery, perEvent, fanOutSubscribers, targetAllocsPerDelivery)
	}
}
