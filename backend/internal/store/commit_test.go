package store

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/exportstream/exportstream/backend/internal/job"
)

func openBolt(t testing.TB) *bolt.DB {
	t.Helper()
	db, err := bolt.Open(filepath.Join(t.TempDir(), "test.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket(bucketJobs); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// committedWrites is the number of read-write transactions db has
// committed: bbolt gives each one the next transaction id (a rolled-back
// one does not advance it), and a read transaction sees the last one's.
// bbolt's own Stats().TxN counts read transactions, and TxStats do not
// count write transactions at all.
func committedWrites(t *testing.T, db *bolt.DB) int {
	t.Helper()
	var id int
	if err := db.View(func(tx *bolt.Tx) error { id = tx.ID(); return nil }); err != nil {
		t.Fatal(err)
	}
	return id
}

// TestChangesWaitingTogetherShareOneTransaction: while one change is being
// committed, every other writer queues; once it is done, all of those go
// into the next transaction together. synctest makes "every writer is
// waiting" a fact rather than a hope: synctest.Wait returns only when each
// goroutine of the bubble is blocked (the committer inside the first
// change, the writers on the committer's channel).
func TestChangesWaitingTogetherShareOneTransaction(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		db := openBolt(t)
		g := newGroupCommitter(db)
		defer g.close()
		before := committedWrites(t, db)
		const writers = 64
		put := func(key string) func(*bolt.Tx) error {
			return func(tx *bolt.Tx) error { return tx.Bucket(bucketJobs).Put([]byte(key), []byte(key)) }
		}
		release := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() { // the first change holds the committer until released
			if err := g.update(func(tx *bolt.Tx) error { <-release; return put("first")(tx) }); err != nil {
				t.Error(err)
			}
		})
		synctest.Wait()
		for w := range writers - 1 {
			wg.Go(func() {
				if err := g.update(put(fmt.Sprintf("w%02d", w))); err != nil {
					t.Error(err)
				}
			})
		}
		synctest.Wait() // all of them are waiting behind the first change
		close(release)
		wg.Wait()

		writes := committedWrites(t, db) - before
		if writes >= writers {
			t.Fatalf("%d changes took %d write transactions: no change shared one", writers, writes)
		}
		if writes != 2 {
			t.Errorf("%d changes took %d write transactions, want 2: the first alone, then the %d that waited for it together", writers, writes, writers-1)
		}
		_ = db.View(func(tx *bolt.Tx) error {
			if n := tx.Bucket(bucketJobs).Stats().KeyN; n != writers {
				t.Errorf("%d keys stored, want %d", n, writers)
			}
			return nil
		})
	})
}

// TestTheGroupCommitKeepsEveryChange: many writers at once all return
// after their change is committed, and a change that fails leaves the
// others in its group committed and writes nothing of its own. (That
// changes share transactions is TestChangesWaitingTogetherShareOneTransaction's
// to show: how many do here depends on the scheduler.)
func TestTheGroupCommitKeepsEveryChange(t *testing.T) {
	db := openBolt(t)
	g := newGroupCommitter(db)
	defer g.close()
	const writers, each = 64, 20
	boom := errors.New("boom")
	var wg sync.WaitGroup
	var failedOK atomic.Int64
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				key := fmt.Appendf(nil, "%02d-%02d", w, i)
				bad := i%7 == 3
				err := g.update(func(tx *bolt.Tx) error {
					if err := tx.Bucket(bucketJobs).Put(key, key); err != nil {
						return err
					}
					if bad {
						return boom // after a Put: it must be rolled back
					}
					return nil
				})
				switch {
				case bad && errors.Is(err, boom):
					failedOK.Add(1)
				case bad || err != nil:
					t.Errorf("change %s: %v (bad=%v)", key, err, bad)
				default:
					// Committed before update returned: a new read sees it.
					_ = db.View(func(tx *bolt.Tx) error {
						if v := tx.Bucket(bucketJobs).Get(key); string(v) != string(key) {
							t.Errorf("change %s not visible after update returned", key)
						}
						return nil
					})
				}
			}
		})
	}
	wg.Wait()
	bad := 0
	for i := range each {
		if i%7 == 3 {
			bad++
		}
	}
	if got := failedOK.Load(); got != int64(writers*bad) {
		t.Errorf("%d failing changes reported their error, want %d", got, writers*bad)
	}
	_ = db.View(func(tx *bolt.Tx) error {
		if n := tx.Bucket(bucketJobs).Stats().KeyN; n != writers*(each-bad) {
			t.Errorf("%d keys stored, want %d (failed changes must store nothing)", n, writers*(each-bad))
		}
		return nil
	})
}

func TestTheGroupCommitTurnsAPanicIntoAnErrorAndRefusesChangesOnceClosed(t *testing.T) {
	db := openBolt(t)
	g := newGroupCommitter(db)
	if err := g.update(func(*bolt.Tx) error { panic("bad change") }); err == nil {
		t.Error("a panicking change reported success")
	}
	if err := g.update(func(tx *bolt.Tx) error { return tx.Bucket(bucketJobs).Put([]byte("k"), []byte("v")) }); err != nil {
		t.Errorf("a change after a panicking one: %v", err)
	}
	g.close()
	g.close() // idempotent
	done := make(chan error, 1)
	go func() { done <- g.update(func(*bolt.Tx) error { return nil }) }()
	select {
	case err := <-done:
		if !errors.Is(err, errClosed) {
			t.Errorf("update after close: %v, want errClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("update after close hangs")
	}
}

// BenchmarkDurableCreate is the store's share of POST /v1/exports on the
// bbolt store: creates from concurrent writers, each durable (committed
// and fsynced) when Create returns. ns/op is per create, across writers.
//
//	go test -run='^$' -bench=DurableCreate -benchtime=20000x ./internal/store/
func BenchmarkDurableCreate(b *testing.B) {
	for _, writers := range []int{1, 32} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			st, err := Open(b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			defer func() { _ = st.Close() }()
			now := time.Now().UTC()
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ReportAllocs()
			b.ResetTimer()
			for range writers {
				wg.Go(func() {
					for next.Add(1) <= int64(b.N) {
						j := job.New(job.Request{Rows: 1}, "", now)
						if _, _, err := st.Create(context.Background(), j, ""); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			db := st.(*jobs).disk.(*boltDisk).db
			ts := db.Stats().TxStats
			b.ReportMetric(float64(b.N)/float64(ts.GetWrite()), "creates/write")
			b.ReportMetric(float64(ts.GetPageAlloc())/float64(b.N), "pageB/create")
			b.ReportMetric(float64(ts.GetSplit())/float64(b.N), "splits/create")
		})
	}
}
