package campaign

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Workload is the seed's browsers: creates (with an Idempotency-Key,
// retried with the same key), cancels, snapshots, lists, per-job and
// multiplexed subscriptions that reconnect with Last-Event-ID, and
// downloads whole and by Range. Every browser draws its actions from its
// own PCG stream of the seed, so a seed replays the same actions (their
// outcomes depend on the faults' timing).
type Workload struct {
	seed     uint64
	browsers []*browser
	rec      *Recorder
	log      *slog.Logger

	subCtx    context.Context // subscribers live until FinishSubscribers
	subCancel context.CancelFunc
	subs      sync.WaitGroup
	nextSub   atomic.Int64

	mu   sync.Mutex
	tabs map[int][]*multiplexed // open /api/events subscribers by browser
}

// Bounds of one browser's action loop.
const (
	maxActions       = 5000
	maxJobSubs       = 8 // per browser, under the BFF's 20 streams per session
	maxTabs          = 2
	maxCreates       = 3 // per browser, under way at once
	maxRequests      = 3 // other requests per browser under way at once
	createAttempts   = 8
	createRetryLimit = 25 * time.Second
)

// NewWorkload makes n browsers for the BFFs at bffs.
func NewWorkload(ctx context.Context, seed uint64, n int, bffs []string, rec *Recorder, log *slog.Logger) *Workload {
	w := &Workload{seed: seed, rec: rec, log: log, tabs: map[int][]*multiplexed{}}
	w.subCtx, w.subCancel = context.WithCancel(ctx)
	for i := range n {
		w.browsers = append(w.browsers, newBrowser(i+1, bffs, rec, log))
	}
	return w
}

// Run runs every browser's action loop until `until` (or ctx); their
// subscribers go on.
func (w *Workload) Run(ctx context.Context, until time.Time) {
	ctx, cancel := context.WithDeadline(ctx, until)
	defer cancel()
	var wg sync.WaitGroup
	for _, b := range w.browsers {
		rng := rand.New(rand.NewPCG(w.seed, uint64(1000+b.id)))
		wg.Go(func() { w.actions(ctx, b, rng) })
	}
	wg.Wait()
}

type action int

const (
	actCreate action = iota
	actFollow
	actTab
	actCancel
	actGet
	actList
	actDownload
	actIdle
)

var actionWeights = []struct {
	a action
	w int
}{{actCreate, 28}, {actFollow, 14}, {actTab, 4}, {actCancel, 7}, {actGet, 15}, {actList, 5}, {actDownload, 15}, {actIdle, 12}}

func pickAction(rng *rand.Rand) action {
	total := 0
	for _, aw := range actionWeights {
		total += aw.w
	}
	x := rng.IntN(total)
	for _, aw := range actionWeights {
		if x < aw.w {
			return aw.a
		}
		x -= aw.w
	}
	return actIdle
}

// actions is one browser's action loop: it starts the session, then draws
// and starts actions until ctx ends (or maxActions), and waits for the
// requests it started.
func (w *Workload) actions(ctx context.Context, b *browser, rng *rand.Rand) {
	// Requests under way when the phase ends finish (each is bounded by
	// opTimeout): cutting them would only make their outcome ambiguous.
	opCtx := context.WithoutCancel(ctx)
	if !w.startSession(ctx, opCtx, b) {
		return
	}
	a := &actor{w: w, b: b, rng: rng, slots: make(chan struct{}, maxRequests)}
	defer a.creates.Wait()
	defer a.requests.Wait()
	for n := 0; n < maxActions && ctx.Err() == nil; n++ {
		a.act(ctx, opCtx, pickAction(rng), n)
		pause(ctx, time.Duration(50+rng.IntN(250))*time.Millisecond)
	}
}

// startSession lists the browser's jobs until one answers (at most 20
// tries): the first call sets the session cookie, so the browser's
// concurrent requests share it. False when ctx ended first.
func (w *Workload) startSession(ctx, opCtx context.Context, b *browser) bool {
	for range 20 {
		op := b.call(opCtx, OpList, http.MethodGet, "/api/exports", "", nil, nil)
		w.rec.Op(op)
		if op.Status == http.StatusOK {
			return true
		}
		if !pause(ctx, 500*time.Millisecond) {
			return false
		}
	}
	return true
}

// actor runs one browser's actions. Creates run beside the other actions
// (a page does not freeze while one is retried), at most maxCreates at
// once; the other requests too, at most maxRequests at once (a page with a
// few tabs). What each does is drawn in act, in order, so the seed replays
// the same choices.
type actor struct {
	w                 *Workload
	b                 *browser
	rng               *rand.Rand
	creates, requests sync.WaitGroup
	slots             chan struct{} // one per request under way
}

// async runs f once a request slot is free; not at all if ctx ends first.
func (a *actor) async(ctx context.Context, f func()) {
	select {
	case a.slots <- struct{}{}:
	case <-ctx.Done():
		return
	}
	a.requests.Go(func() {
		defer func() { <-a.slots }()
		f()
	})
}

// act draws the choices of action act (the n-th) and starts it; requests
// run on opCtx.
func (a *actor) act(ctx, opCtx context.Context, act action, n int) {
	w, b, rng := a.w, a.b, a.rng
	notDeleted := func(k *known) bool { return !k.deleted }
	switch act {
	case actCreate:
		w.create(ctx, b, rng, n, &a.creates)
	case actFollow:
		o := drawSubOpts(rng)
		if code, _, ok := b.pick(rng.Float64(), notDeleted); ok {
			w.follow(b, o, code)
		}
	case actTab:
		w.tab(b, rng)
	case actCancel:
		a.cancel(ctx, opCtx)
	case actGet:
		if code, _, ok := b.pick(rng.Float64(), notDeleted); ok {
			a.async(ctx, func() {
				op := b.call(opCtx, OpGet, http.MethodGet, "/api/exports/"+code, code, nil, nil)
				b.observe(op.Job)
				w.rec.Op(op)
			})
		}
	case actList:
		a.async(ctx, func() { w.rec.Op(b.call(opCtx, OpList, http.MethodGet, "/api/exports", "", nil, nil)) })
	case actDownload:
		a.download(ctx, opCtx)
	case actIdle:
		pause(ctx, time.Duration(200+rng.IntN(1300))*time.Millisecond)
	}
}

// cancel DELETEs one of the browser's jobs, preferably one still running.
func (a *actor) cancel(ctx, opCtx context.Context) {
	b := a.b
	x := a.rng.Float64()
	code, _, ok := b.pick(x, func(k *known) bool { return !k.deleted && !isTerminal(k.status) })
	if !ok {
		code, _, ok = b.pick(x, func(k *known) bool { return !k.deleted })
	}
	if ok {
		a.async(ctx, func() { a.w.cancel(opCtx, b, code) })
	}
}

// download GETs the file of one of the browser's COMPLETED jobs, half the
// time by a random Range.
func (a *actor) download(ctx, opCtx context.Context) {
	b, rng := a.b, a.rng
	x, ranged, r1, r2 := rng.Float64(), rng.IntN(2) == 0, rng.Float64(), rng.Float64()
	code, k, ok := b.pick(x, func(k *known) bool { return !k.deleted && k.status == StatusCompleted && k.file != nil })
	if !ok {
		return
	}
	var r *ByteRange
	if ranged {
		r = randomRange(k.file.Size, r1, r2)
	}
	a.async(ctx, func() { a.w.rec.Op(b.download(opCtx, OpDownload, code, k.rows, r)) })
}

func isTerminal(status string) bool {
	return status == StatusCompleted || status == StatusFailed || status == StatusCancelled
}

// randomRange is a range inside a file of size bytes, at most 64 KiB long.
func randomRange(size int64, x, y float64) *ByteRange {
	if size <= 0 {
		return &ByteRange{0, 0}
	}
	start := int64(x * float64(size))
	return &ByteRange{Start: start, End: min(size-1, start+int64(y*64*1024))}
}

// create POSTs a seeded export, retrying with the same Idempotency-Key
// after a lost answer, a 5xx or a 429, until accepted or refused for good.
// Its choices are drawn here; the attempts run in their own goroutine.
func (w *Workload) create(ctx context.Context, b *browser, rng *rand.Rand, n int, creates *sync.WaitGroup) {
	rows, duration := 100+rng.IntN(4901), 500+rng.IntN(4501)
	body := fmt.Sprintf(`{"rows":%d,"durationMs":%d}`, rows, duration)
	if rng.IntN(100) < 15 {
		body = fmt.Sprintf(`{"rows":%d,"durationMs":%d,"failAt":%d}`, rows, duration, 1+rng.IntN(99))
	}
	follow := rng.IntN(100) < 70
	o := drawSubOpts(rng)
	if !b.reserve(&b.creating, maxCreates) {
		return
	}
	key := fmt.Sprintf("chaos-%d-b%d-%d", w.seed, b.id, n)
	creates.Go(func() {
		defer b.release(&b.creating)
		w.createWithRetries(ctx, b, key, body, func(code string) {
			if follow {
				w.follow(b, o, code)
			}
		})
	})
}

func (w *Workload) createWithRetries(ctx context.Context, b *browser, key, body string, accepted func(code string)) {
	hdr := http.Header{"Idempotency-Key": {key}}
	deadline := time.Now().Add(createRetryLimit)
	for attempt := 1; attempt <= createAttempts && ctx.Err() == nil; attempt++ {
		op := b.call(context.WithoutCancel(ctx), OpCreate, http.MethodPost, "/api/exports", "", []byte(body), hdr)
		op.Key, op.Attempt = key, attempt
		w.rec.Op(op)
		switch {
		case op.Accepted() && op.Job != nil:
			b.accept(op.Job)
			accepted(op.Job.Code)
			return
		case op.Status == http.StatusTooManyRequests || op.Ambiguous():
		default:
			return // refused for good (4xx)
		}
		wait := min(3*time.Second, 300*time.Millisecond<<(attempt-1))
		if time.Now().Add(wait).After(deadline) || !pause(ctx, wait) {
			return
		}
	}
}

func (w *Workload) cancel(ctx context.Context, b *browser, code string) {
	op := b.call(ctx, OpCancel, http.MethodDelete, "/api/exports/"+code, code, nil, nil)
	w.rec.Op(op)
	switch {
	case op.Status == http.StatusOK:
		b.observe(op.Job)
	case op.Status == http.StatusNoContent:
		b.markDeleted(code)
	case op.Ambiguous():
		b.markDeleted(code) // it may have been deleted: stop using it
	}
}

// drawSubOpts draws a per-job subscriber's choices: a fifth abandon it
// after a few events, a quarter drop it once and resume by Last-Event-ID.
func drawSubOpts(rng *rand.Rand) subOpts {
	o := subOpts{}
	switch x := rng.IntN(100); {
	case x < 20:
		o.abandonAfter = 1 + rng.IntN(6)
	case x < 45:
		o.reloadAfter = 1 + rng.IntN(4)
	}
	return o
}

// follow starts a per-job subscriber.
func (w *Workload) follow(b *browser, o subOpts, code string) {
	if !b.reserve(&b.subsJob, maxJobSubs) {
		return
	}
	s := &Subscriber{ID: int(w.nextSub.Add(1)), Browser: b.id, Kind: SubJob, Code: code}
	w.subs.Go(func() {
		defer b.release(&b.subsJob)
		b.followJob(w.subCtx, s, o)
		w.rec.Sub(s)
	})
}

// tab opens an /api/events subscriber; half of them close after 3–20 s.
func (w *Workload) tab(b *browser, rng *rand.Rand) {
	o := subOpts{}
	if rng.IntN(2) == 0 {
		o.abandonIn = time.Duration(3000+rng.IntN(17000)) * time.Millisecond
	}
	if !b.reserve(&b.subsAll, maxTabs) {
		return
	}
	m := &multiplexed{want: make(chan map[string]bool, 1)}
	w.mu.Lock()
	w.tabs[b.id] = append(w.tabs[b.id], m)
	w.mu.Unlock()
	s := &Subscriber{ID: int(w.nextSub.Add(1)), Browser: b.id, Kind: SubMultiplex}
	w.subs.Go(func() {
		defer b.release(&b.subsAll)
		b.followAll(w.subCtx, s, o, m)
		w.rec.Sub(s)
	})
}

// Settle reads every job of every session after the faults ended, again
// and again (every 500 ms), until each accepted job is terminal (or
// deleted) and each session's list holds only terminal jobs, or bound
// passes. It records the final GETs and lists; it returns the jobs'
// final states and false when bound passed first.
func (w *Workload) Settle(ctx context.Context, bound time.Duration) (map[string]*Job, bool) {
	final := map[string]*Job{}
	settled := map[string]bool{}
	err := waitFor(ctx, bound, func() error {
		pending := 0
		for _, b := range w.browsers {
			codes, _ := b.accepted()
			for _, code := range codes {
				if settled[code] {
					continue
				}
				op := b.call(ctx, OpFinalGet, http.MethodGet, "/api/exports/"+code, code, nil, nil)
				w.rec.Op(op)
				switch {
				case op.Status == http.StatusNotFound:
					settled[code], final[code] = true, nil
				case op.Status == http.StatusOK && op.Job != nil && op.Job.Terminal():
					settled[code], final[code] = true, op.Job
					b.observe(op.Job)
				default:
					pending++
				}
			}
			op := b.call(ctx, OpFinalList, http.MethodGet, "/api/exports", "", nil, nil)
			w.rec.Op(op)
			if op.Status != http.StatusOK {
				pending++
			}
			for _, j := range op.Jobs {
				if !j.Terminal() {
					pending++
				}
			}
		}
		if pending > 0 {
			return fmt.Errorf("%d jobs or lists not settled", pending)
		}
		return nil
	})
	return final, err == nil
}

// FinishSubscribers tells each open /api/events subscriber which terminal
// events its session's jobs must have shown it, then waits (bounded) for
// every subscriber to end; the rest are ended as still following at the
// deadline.
func (w *Workload) FinishSubscribers(final map[string]*Job, bound time.Duration) {
	for _, b := range w.browsers {
		codes, deleted := b.accepted()
		want := map[string]bool{}
		for _, c := range codes {
			if j := final[c]; j != nil && !deleted[c] {
				want[c] = true
			}
		}
		w.mu.Lock()
		for _, m := range w.tabs[b.id] {
			m.want <- want
		}
		w.mu.Unlock()
	}
	done := make(chan struct{})
	go func() { w.subs.Wait(); close(done) }()
	t := time.NewTimer(bound)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		w.log.Info("subscribers still following at the deadline: ending them")
	}
	w.subCancel()
	<-done
}

// FinalDownloads downloads every COMPLETED job whole and by a seeded
// Range, each up to 5 times while the answer is not a verified one.
func (w *Workload) FinalDownloads(ctx context.Context, final map[string]*Job) {
	rng := rand.New(rand.NewPCG(w.seed, 77))
	for _, b := range w.browsers {
		codes, deleted := b.accepted()
		for _, code := range codes {
			j := final[code]
			if j == nil || deleted[code] || j.Status != StatusCompleted || j.File == nil {
				continue
			}
			r := randomRange(j.File.Size, rng.Float64(), rng.Float64())
			for _, rg := range []*ByteRange{nil, r} {
				for attempt := range 5 {
					op := b.download(ctx, OpFinalDownload, code, j.RowsTotal, rg)
					op.Attempt = attempt + 1
					w.rec.Op(op)
					if op.Complete && (op.Status == http.StatusOK || op.Status == http.StatusPartialContent) || ctx.Err() != nil {
						break
					}
					pause(ctx, 500*time.Millisecond)
				}
			}
		}
	}
}

// Close drops the browsers' idle connections, so the services' leak
// readings count none of ours.
func (w *Workload) Close() {
	w.subCancel()
	for _, b := range w.browsers {
		b.closeIdle()
	}
}
