package store

// Progress ticks published before they are written (see the package doc):
// what is on disk when a watcher sees a change, what a crash leaves, and
// what it costs in commits.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/exportstream/exportstream/backend/internal/job"
)

// openDurable opens the bbolt store in dir, closed when the test ends.
func openDurable(t testing.TB, dir string, opts ...Option) *jobs {
	t.Helper()
	st, err := Open(dir, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st.(*jobs)
}

func dbOf(s *jobs) *bolt.DB { return s.disk.(*boltDisk).db }

// stored reads code's record as db has committed it, fsynced: what a
// crash at this moment would leave.
func stored(t testing.TB, db *bolt.DB, code string) (r record, ok bool) {
	t.Helper()
	err := db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketJobs).Get([]byte(code))
		if v == nil {
			return nil
		}
		ok = true
		return json.Unmarshal(v, &r)
	})
	if err != nil {
		t.Fatal(err)
	}
	return r, ok
}

// crashImage copies what db has committed into a new data directory: the
// disk as a process killed at this moment would leave it.
func crashImage(t testing.TB, db *bolt.DB) string {
	t.Helper()
	dir := t.TempDir()
	if err := db.View(func(tx *bolt.Tx) error {
		return tx.CopyFile(filepath.Join(dir, "exportstream.db"), 0o600)
	}); err != nil {
		t.Fatal(err)
	}
	return dir
}

func toStatus(s job.Status) func(*job.Job) error {
	return func(j *job.Job) error { j.Status = s; return nil }
}

// toRows is a progress tick: IN_PROGRESS stays, rowsDone and progress move.
func toRows(rows int) func(*job.Job) error {
	return func(j *job.Job) error { j.RowsDone, j.Progress = rows, rows*100/j.RowsTotal; return nil }
}

// startRunning creates a job of a million rows and starts it.
func startRunning(t testing.TB, st Store) job.Job {
	t.Helper()
	j := job.New(job.Request{Rows: 1_000_000}, "alice", time.Now().UTC())
	if _, _, err := st.Create(context.Background(), j, ""); err != nil {
		t.Fatal(err)
	}
	j, err := st.Update(context.Background(), j.Code, toStatus(job.StatusInProgress))
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func TestAProgressTickIsSeenBeforeItIsOnDiskAndAStatusChangeIsOnDiskBeforeItIsSeen(t *testing.T) {
	st := openDurable(t, t.TempDir(), WithProgressCheckpoint(time.Hour))
	db := dbOf(st)
	j := job.New(job.Request{Rows: 1000}, "alice", time.Now().UTC())
	if _, _, err := st.Create(t.Context(), j, ""); err != nil {
		t.Fatal(err)
	}
	if r, ok := stored(t, db, j.Code); !ok || r.Job.Seq != 1 {
		t.Fatalf("after the create returned: on disk %v at seq %d, want seq 1", ok, r.Job.Seq)
	}
	steps := []struct {
		name       string
		change     func(*job.Job) error
		onDiskSeen bool // on disk by the time a watcher sees it
	}{
		{"PENDING → IN_PROGRESS", toStatus(job.StatusInProgress), true},
		{"a progress tick", toRows(100), false},
		{"another progress tick", toRows(200), false},
		{"IN_PROGRESS → COMPLETED", func(j *job.Job) error {
			j.Status, j.Progress, j.RowsDone, j.File = job.StatusCompleted, 100, 1000, &job.File{Name: "x.csv"}
			return nil
		}, true},
		// Only IN_PROGRESS → IN_PROGRESS skips the wait: whatever comes
		// after the end is durable, whatever it changes.
		{"a change of rows of the ended job", toRows(1000), true},
	}
	for _, step := range steps {
		_, changed, err := st.Watch(t.Context(), j.Code)
		if err != nil {
			t.Fatal(err)
		}
		type sight struct {
			seen job.Job
			disk record
		}
		sights := make(chan sight, 1)
		go func() { // a watcher that looks at the disk the moment it is woken
			<-changed
			seen, _, _ := st.Watch(context.Background(), j.Code)
			disk, _ := stored(t, db, j.Code)
			sights <- sight{seen, disk}
		}()
		next, err := st.Update(t.Context(), j.Code, step.change)
		if err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		got := <-sights
		switch {
		case got.seen.Seq != next.Seq:
			t.Fatalf("%s: the watcher saw seq %d, want %d", step.name, got.seen.Seq, next.Seq)
		case step.onDiskSeen && got.disk.Job.Seq != next.Seq:
			t.Errorf("%s: seen at seq %d while the disk had seq %d: visible before durable", step.name, next.Seq, got.disk.Job.Seq)
		case !step.onDiskSeen && got.disk.Job.Seq == next.Seq:
			t.Errorf("%s: on disk already when seen: the tick waited for the disk", step.name)
		}
	}
	if r, _ := stored(t, db, j.Code); r.Job.Status != job.StatusCompleted || r.Job.RowsDone != 1000 {
		t.Errorf("on disk at the end: %s with %d rows, want COMPLETED with the last rows", r.Job.Status, r.Job.RowsDone)
	}
}

// checkResume opens the crash image dir and checks job code there
// against a watcher's sighting before the crash: the snapshot loaded is
// that one or has a higher seq, it has no rows beyond maxRows (the most
// that can have been written), and the next change's seq is above every
// seq published before the image was taken (published).
func checkResume(t *testing.T, dir, code string, seen job.Job, published int64, maxRows int) {
	t.Helper()
	st := openDurable(t, dir)
	loaded, err := st.Get(t.Context(), code)
	if err != nil {
		t.Fatalf("after the crash at seq %d: %v", seen.Seq, err)
	}
	switch {
	case loaded.Status != job.StatusInProgress:
		t.Fatalf("after the crash at seq %d: %s, want IN_PROGRESS (a status change is durable)", seen.Seq, loaded.Status)
	case loaded.Seq < seen.Seq:
		t.Fatalf("after the crash at seq %d: the job is at seq %d", seen.Seq, loaded.Seq)
	case loaded.Seq == seen.Seq && (loaded.RowsDone != seen.RowsDone || loaded.Progress != seen.Progress):
		t.Fatalf("seq %d names two snapshots: %d rows before the crash, %d after", seen.Seq, seen.RowsDone, loaded.RowsDone)
	case loaded.RowsDone > maxRows:
		t.Fatalf("after the crash at seq %d: %d rows, more than the %d published", seen.Seq, loaded.RowsDone, maxRows)
	}
	next, err := st.Update(t.Context(), code, toRows(loaded.RowsDone+1))
	if err != nil {
		t.Fatal(err)
	}
	if next.Seq <= published {
		t.Fatalf("after the crash: the next seq is %d, but seq %d was published before it", next.Seq, published)
	}
	_ = st.Close()
}

func TestAfterACrashTheNextSeqIsAboveEverySeqAWatcherSaw(t *testing.T) {
	// No checkpoint at all (only the ceiling's writes), and checkpoints
	// racing the ticks.
	for _, every := range []time.Duration{time.Hour, time.Millisecond} {
		t.Run(fmt.Sprintf("checkpoint every %v, a crash after each tick", every), func(t *testing.T) {
			t.Parallel()
			st := openDurable(t, t.TempDir(), WithProgressCheckpoint(every))
			j := startRunning(t, st)
			const ticks = 4*seqBlock + 10 // the ceiling is crossed four times
			type crash struct {
				dir  string
				seen job.Job
			}
			var crashes []crash
			for i := range ticks {
				_, changed, _ := st.Watch(t.Context(), j.Code)
				if _, err := st.Update(t.Context(), j.Code, toRows(i+1)); err != nil {
					t.Fatal(err)
				}
				<-changed
				seen, _, _ := st.Watch(t.Context(), j.Code)
				crashes = append(crashes, crash{crashImage(t, dbOf(st)), seen})
			}
			for _, c := range crashes {
				checkResume(t, c.dir, j.Code, c.seen, c.seen.Seq, c.seen.RowsDone)
			}
		})
	}
	t.Run("a crash while ticks go on", func(t *testing.T) {
		t.Parallel()
		st := openDurable(t, t.TempDir(), WithProgressCheckpoint(5*time.Millisecond))
		j := startRunning(t, st)
		const ticks = 3000
		var published atomic.Int64
		done := make(chan struct{})
		go func() {
			defer close(done)
			for i := range ticks {
				next, err := st.Update(context.Background(), j.Code, toRows(i+1))
				if err != nil {
					t.Error(err)
					return
				}
				published.Store(next.Seq)
			}
		}()
		type crash struct {
			dir       string
			seen      job.Job
			published int64
		}
		var crashes []crash
		for {
			seen, changed, err := st.Watch(t.Context(), j.Code)
			if err != nil {
				t.Fatal(err)
			}
			p := published.Load() // published before the image is taken
			crashes = append(crashes, crash{crashImage(t, dbOf(st)), seen, max(p, seen.Seq)})
			if seen.RowsDone == ticks {
				break
			}
			<-changed
		}
		<-done
		t.Logf("%d crash images while %d ticks went by", len(crashes), ticks)
		for _, c := range crashes {
			checkResume(t, c.dir, j.Code, c.seen, c.published, ticks)
		}
	})
}

func TestTheCheckpointWritesProgressWithinItsInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const every = 200 * time.Millisecond
		st := openDurable(t, t.TempDir(), WithProgressCheckpoint(every))
		db := dbOf(st)
		j := startRunning(t, st) // fake time stands still: the interval starts now
		for round := range 3 {
			tick, err := st.Update(t.Context(), j.Code, toRows(round+1))
			if err != nil {
				t.Fatal(err)
			}
			time.Sleep(every - time.Millisecond)
			synctest.Wait()
			if r, _ := stored(t, db, j.Code); r.Job.Seq == tick.Seq {
				t.Fatalf("round %d: the tick is on disk before the checkpoint", round)
			}
			time.Sleep(time.Millisecond)
			synctest.Wait() // the checkpoint has fired and its commit returned
			if r, _ := stored(t, db, j.Code); r.Job.Seq != tick.Seq || r.Job.RowsDone != round+1 {
				t.Fatalf("round %d: %v after the tick, the disk has seq %d (%d rows), want seq %d (%d rows)",
					round, every, r.Job.Seq, r.Job.RowsDone, tick.Seq, round+1)
			}
		}
		// An interval with no tick writes nothing.
		before := committedWrites(t, db)
		time.Sleep(3 * every)
		synctest.Wait()
		if n := committedWrites(t, db) - before; n != 0 {
			t.Errorf("%d commits in intervals without a tick, want 0", n)
		}
	})
}

func TestCloseWritesTheProgressNotYetOnDiskAndARestartContinuesTheSeqs(t *testing.T) {
	dir := t.TempDir()
	st := openDurable(t, dir, WithProgressCheckpoint(time.Hour))
	var last []job.Job
	for i := range 3 {
		j := startRunning(t, st)
		for r := range 10 * (i + 1) {
			var err error
			if j, err = st.Update(t.Context(), j.Code, toRows(r+1)); err != nil {
				t.Fatal(err)
			}
		}
		last = append(last, j)
	}
	deleted := startRunning(t, st)
	_, _ = st.Update(t.Context(), deleted.Code, toRows(5))
	if err := st.Delete(t.Context(), deleted.Code); err != nil {
		t.Fatal(err)
	}
	db := dbOf(st)
	for _, j := range last {
		if r, _ := stored(t, db, j.Code); r.Job.Seq == j.Seq {
			t.Fatalf("the last tick of %s is on disk before Close", j.Code)
		}
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	db, err := bolt.Open(filepath.Join(dir, "exportstream.db"), 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range last {
		r, _ := stored(t, db, j.Code)
		if r.Job.Seq != j.Seq || r.Job.RowsDone != j.RowsDone || r.SeqCeiling != j.Seq {
			t.Errorf("after Close, %s on disk: seq %d, %d rows, ceiling %d; want seq %d, %d rows, ceiling %d (nothing above was published)",
				j.Code, r.Job.Seq, r.Job.RowsDone, r.SeqCeiling, j.Seq, j.RowsDone, j.Seq)
		}
	}
	if _, ok := stored(t, db, deleted.Code); ok {
		t.Error("Close wrote back a job deleted with progress not yet written")
	}
	_ = db.Close()

	st = openDurable(t, dir, WithProgressCheckpoint(time.Hour))
	for _, j := range last {
		next, err := st.Update(t.Context(), j.Code, toRows(j.RowsDone+1))
		if err != nil || next.Seq != j.Seq+1 {
			t.Errorf("after a clean restart, the next seq of %s is %d (%v), want %d", j.Code, next.Seq, err, j.Seq+1)
		}
	}
}

func TestACheckpointNeitherBringsBackADeletedJobNorOverwritesANewerState(t *testing.T) {
	st := openDurable(t, t.TempDir(), WithProgressCheckpoint(time.Hour))
	disk := st.disk.(*boltDisk)
	ended, deleted := startRunning(t, st), startRunning(t, st)
	var stale []checkpoint
	for _, j := range []job.Job{ended, deleted} {
		tick, err := st.Update(t.Context(), j.Code, toRows(10))
		if err != nil {
			t.Fatal(err)
		}
		stale = append(stale, checkpoint{job: tick, ceiling: tick.Seq + seqBlock})
	}
	// A checkpoint took these snapshots; before it commits, one job ends
	// and the other is deleted.
	final, err := st.Update(t.Context(), ended.Code, toStatus(job.StatusCompleted))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Delete(t.Context(), deleted.Code); err != nil {
		t.Fatal(err)
	}
	if err := disk.putCheckpoints(stale); err != nil {
		t.Fatal(err)
	}
	db := dbOf(st)
	if r, _ := stored(t, db, ended.Code); r.Job.Seq != final.Seq || r.Job.Status != job.StatusCompleted {
		t.Errorf("the ended job on disk: %s at seq %d, want COMPLETED at seq %d", r.Job.Status, r.Job.Seq, final.Seq)
	}
	if _, ok := stored(t, db, deleted.Code); ok {
		t.Error("the checkpoint brought back a deleted job")
	}
}

func TestACheckpointThatFailedIsTriedAgain(t *testing.T) {
	e := &entry{job: job.Job{Code: "c", Status: job.StatusInProgress, Seq: 5}, changed: make(chan struct{}), ceiling: 64}
	var writes [][]checkpoint
	fail := true
	c := &checkpointer{dirty: make(map[string]*entry), write: func(cps []checkpoint) error {
		writes = append(writes, cps)
		if fail {
			return errors.New("disk full")
		}
		return nil
	}}
	e.mu.Lock()
	c.mark("c", e)
	e.mu.Unlock()
	if err := c.flush(); err == nil {
		t.Fatal("the failed write was not reported")
	}
	fail = false
	if err := c.flush(); err != nil {
		t.Fatal(err)
	}
	if len(writes) != 2 || len(writes[1]) != 1 || writes[1][0].job.Seq != 5 {
		t.Errorf("writes %v, want the snapshot again after the failure", writes)
	}
	if err := c.flush(); err != nil || len(writes) != 2 {
		t.Errorf("a third checkpoint wrote %d times, want nothing left to write", len(writes))
	}
}

func TestAJobTickingFewerThanABlockPerIntervalNeverWaitsForTheDisk(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const every = 200 * time.Millisecond
		st := openDurable(t, t.TempDir(), WithProgressCheckpoint(every))
		db := dbOf(st)
		j := startRunning(t, st)
		before := committedWrites(t, db)
		const intervals, perInterval = 10, seqBlock - 4
		rows := 0
		for range intervals {
			for range perInterval {
				rows++
				if _, err := st.Update(t.Context(), j.Code, toRows(rows)); err != nil {
					t.Fatal(err)
				}
			}
			time.Sleep(every)
			synctest.Wait()
		}
		// Each checkpoint raised the ceiling a block above the job's seq,
		// so no tick crossed it: one commit per interval, the checkpoint's.
		if n := committedWrites(t, db) - before; n != intervals {
			t.Errorf("%d ticks in %d intervals took %d commits, want %d (the checkpoints only)", intervals*perInterval, intervals, n, intervals)
		}
	})
}

func TestACheckpointRaisesTheCeilingOnlyOnceItIsOnDisk(t *testing.T) {
	st := openDurable(t, t.TempDir(), WithProgressCheckpoint(time.Hour))
	db := dbOf(st)
	gate, writing := make(chan struct{}), make(chan struct{})
	write := st.progress.write
	st.progress.write = func(cps []checkpoint) error {
		close(writing)
		<-gate
		return write(cps)
	}
	j := startRunning(t, st) // seq 2, ceiling 2+seqBlock on disk
	for range seqBlock - 1 {
		var err error
		if j, err = st.Update(t.Context(), j.Code, toRows(j.RowsDone+1)); err != nil {
			t.Fatal(err)
		}
	}
	flushed := make(chan error, 1)
	go func() { flushed <- st.progress.flush() }()
	<-writing // the checkpoint has its snapshot, with a ceiling a block higher, and waits
	for range 2 {
		tick, err := st.Update(t.Context(), j.Code, toRows(j.RowsDone+1))
		if err != nil {
			t.Fatal(err)
		}
		j = tick
	}
	// j.Seq is now past the ceiling on disk: the tick that passed it was written.
	if r, _ := stored(t, db, j.Code); r.Job.Seq < 2+seqBlock+1 {
		t.Errorf("seq %d published past the ceiling %d on disk, before the checkpoint raising it committed", j.Seq, r.SeqCeiling)
	}
	close(gate)
	if err := <-flushed; err != nil {
		t.Fatal(err)
	}
	st.progress.write = write
}

// TestAProgressTickCostsAFractionOfACommit counts write transactions:
// a tick waits for (and pays) a commit only when it passes its job's seq
// ceiling, one in seqBlock, and the checkpoints add one per interval.
func TestAProgressTickCostsAFractionOfACommit(t *testing.T) {
	const ticks = 1000
	for _, tc := range []struct{ jobs int }{{50}, {1}} {
		t.Run(fmt.Sprintf("%d ticks over %d running jobs", ticks, tc.jobs), func(t *testing.T) {
			st := openDurable(t, t.TempDir()) // the default interval
			db := dbOf(st)
			codes := make([]string, tc.jobs)
			for i := range codes {
				codes[i] = startRunning(t, st).Code
			}
			before := committedWrites(t, db)
			start := time.Now()
			var wg sync.WaitGroup
			for _, code := range codes { // one generation per job, as the pool runs them
				wg.Go(func() {
					for r := range ticks / tc.jobs {
						if _, err := st.Update(context.Background(), code, toRows(r+1)); err != nil {
							t.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			elapsed := time.Since(start)
			commits := committedWrites(t, db) - before
			checkpoints := int(elapsed/DefaultProgressCheckpoint) + 1
			limit := (ticks+seqBlock-1)/seqBlock + checkpoints
			t.Logf("%d ticks: %d commits in %v (limit %d)", ticks, commits, elapsed, limit)
			if commits > limit {
				t.Errorf("%d ticks over %d jobs took %d commits in %v, want at most %d: one per %d ticks and one per checkpoint",
					ticks, tc.jobs, commits, elapsed, limit, seqBlock)
			}
		})
	}
	t.Run("every tick written before it is seen (checkpoint 0)", func(t *testing.T) {
		st := openDurable(t, t.TempDir(), WithProgressCheckpoint(0))
		db := dbOf(st)
		code := startRunning(t, st).Code
		before := committedWrites(t, db)
		const ticks = 200 // one fsync each
		for r := range ticks {
			if _, err := st.Update(t.Context(), code, toRows(r+1)); err != nil {
				t.Fatal(err)
			}
		}
		if commits := committedWrites(t, db) - before; commits != ticks {
			t.Errorf("%d ticks took %d commits, want one each", ticks, commits)
		}
	})
}

// BenchmarkProgressTick measures Update's latency for progress ticks with
// N running jobs, each ticked by its own goroutine as the pool's workers
// do. "written first" is every tick committed and fsynced before it is
// seen (WithProgressCheckpoint(0): the store before checkpoints),
// "checkpointed" the default. Two loads:
//
//   - paced: each job ticks every 100 ms (PROGRESS_INTERVAL's default),
//     the phases spread over the interval; b.N is ticks per job, so
//     ns/op is the pace, not a cost.
//   - closed: each job ticks again as soon as its last tick returns, b.N
//     ticks in all; ns/op is wall time per tick. With N goroutines on few
//     cores, a call's latency includes waiting for a core.
//
// p50-µs, p99-µs and max-µs are single Update calls; commits/tick counts
// write transactions (bbolt gives each the next id).
//
//	go test -run='^$' -bench=ProgressTick/.*/paced -benchtime=30x ./internal/store/
//	go test -run='^$' -bench=ProgressTick/.*/closed -benchtime=20000x ./internal/store/
func BenchmarkProgressTick(b *testing.B) {
	const pace = 100 * time.Millisecond
	for _, path := range []struct {
		name  string
		every time.Duration
	}{{"written first", 0}, {"checkpointed", DefaultProgressCheckpoint}} {
		for _, paced := range []bool{true, false} {
			load := map[bool]string{true: "paced", false: "closed"}[paced]
			for _, running := range []int{1, 50, 500} {
				b.Run(fmt.Sprintf("%s/%s/jobs=%d", path.name, load, running), func(b *testing.B) {
					st := openDurable(b, b.TempDir(), WithProgressCheckpoint(path.every))
					codes := make([]string, running)
					for i := range codes {
						codes[i] = startRunning(b, st).Code
					}
					db := dbOf(st)
					txID := func() (id int) {
						_ = db.View(func(tx *bolt.Tx) error { id = tx.ID(); return nil })
						return id
					}
					before := txID()
					latencies := make([][]time.Duration, running)
					var next atomic.Int64
					more := func() bool { return next.Add(1) <= int64(b.N) }
					var wg sync.WaitGroup
					b.ResetTimer()
					for i, code := range codes {
						wg.Go(func() {
							var tick <-chan time.Time
							ticks := b.N
							if paced {
								time.Sleep(pace * time.Duration(i) / time.Duration(running)) // the job's phase
								t := time.NewTicker(pace)
								defer t.Stop()
								tick = t.C
							}
							for rows := 1; ; rows++ {
								if paced {
									if rows > ticks {
										return
									}
									<-tick
								} else if !more() {
									return
								}
								t0 := time.Now()
								if _, err := st.Update(context.Background(), code, toRows(rows)); err != nil {
									b.Error(err)
									return
								}
								latencies[i] = append(latencies[i], time.Since(t0))
							}
						})
					}
					wg.Wait()
					b.StopTimer()
					commits := txID() - before
					var all []time.Duration
					for _, l := range latencies {
						all = append(all, l...)
					}
					slices.Sort(all)
					us := func(d time.Duration) float64 { return float64(d) / 1e3 }
					b.ReportMetric(us(all[len(all)/2]), "p50-µs")
					b.ReportMetric(us(all[len(all)*99/100]), "p99-µs")
					b.ReportMetric(us(all[len(all)-1]), "max-µs")
					b.ReportMetric(float64(commits)/float64(len(all)), "commits/tick")
				})
			}
		}
	}
}
