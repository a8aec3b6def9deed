package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/exportstream/exportstream/backend/internal/job"
)

var (
	bucketJobs = []byte("jobs")        // code → record
	bucketKeys = []byte("idempotency") // owner \x00 key → idemKey
	bucketGone = []byte("expired")     // code → tombstone
)

// record is a job as stored: the JSON snapshot plus what the API never shows.
type record struct {
	Job     job.Job     `json:"job"`
	Request job.Request `json:"request"`
	Owner   string      `json:"owner"`
	Key     string      `json:"key,omitempty"`
	// SeqCeiling bounds the seqs that may have been published of this
	// job while it ran (bbolt only; see the package doc).
	SeqCeiling int64 `json:"seqCeiling,omitempty"`
}

type boltDisk struct {
	db      *bolt.DB
	commits *groupCommitter // every change after load goes through it
	reserve *reserve
}

// Option configures Open.
type Option func(*options)

type options struct {
	diskReserve        int64
	progressCheckpoint time.Duration
}

// WithDiskReserve keeps bytes of the data directory's disk in reserve (a
// file of that size, ReserveFile): when the disk fills, it is given up so
// running jobs can still be marked FAILED. Creates are refused with
// job.ErrStorageFull unless the reserve is in place and as many bytes
// again are free. 0 (the default): no reserve, no check.
func WithDiskReserve(bytes int64) Option { return func(o *options) { o.diskReserve = bytes } }

// WithProgressCheckpoint sets how often progress ticks, published before
// they are written, are checkpointed to disk (DefaultProgressCheckpoint
// unless set). A crash loses at most this much of a running job's
// progress; the job resumes from its last checkpoint. 0 or less: every
// change is written before it is seen, progress ticks too.
func WithProgressCheckpoint(every time.Duration) Option {
	return func(o *options) { o.progressCheckpoint = every }
}

// ReserveFile is the name of the disk reserve in the data directory.
const ReserveFile = "disk-reserve"

// Open opens (creating if needed) the durable store in dir and loads every
// job, key and tombstone into memory. A full or read-only disk is reported
// as job.ErrStorageFull or job.ErrStorageReadOnly.
func Open(dir string, opts ...Option) (Store, error) {
	o := options{progressCheckpoint: DefaultProgressCheckpoint}
	for _, opt := range opts {
		opt(&o)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("open store: %w", StorageError(err))
	}
	db, err := bolt.Open(filepath.Join(dir, "exportstream.db"), 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("open store: %w", StorageError(err))
	}
	disk := &boltDisk{db: db, reserve: newReserve(filepath.Join(dir, ReserveFile), o.diskReserve)}
	s := newJobs(disk)
	if err := s.load(db); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open store: %w", StorageError(err))
	}
	disk.commits = newGroupCommitter(db)
	if o.progressCheckpoint > 0 {
		s.progress = newCheckpointer(o.progressCheckpoint, disk.putCheckpoints, s.snapshot)
	}
	// No room for the reserve: start anyway. Reads and downloads work;
	// creates get job.ErrStorageFull until there is room.
	_ = disk.reserve.roomForNew()
	return s, nil
}

// write runs a change. On a full disk it gives up the reserve and tries
// once more, so the change (a running job's failure, say) still lands.
func (d *boltDisk) write(change func() error) error {
	err := StorageError(change())
	if errors.Is(err, job.ErrStorageFull) && d.reserve.release() {
		err = StorageError(change())
	}
	return err
}

func (s *jobs) load(db *bolt.DB) error {
	return db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketJobs, bucketKeys, bucketGone} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		err := tx.Bucket(bucketJobs).ForEach(func(k, v []byte) error {
			var r record
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("job %s: %w", k, err)
			}
			r.Job.Request, r.Job.Owner = r.Request, r.Owner
			if !r.Job.Status.Terminal() && r.SeqCeiling > r.Job.Seq {
				// Ticks up to the ceiling may have been seen but not
				// written: the snapshot on disk is now newer than all.
				r.Job.Seq = r.SeqCeiling + 1
			}
			s.entries[string(k)] = &entry{job: r.Job, key: r.Key, changed: make(chan struct{}), ceiling: r.SeqCeiling}
			s.count(&r.Job, 1)
			return nil
		})
		if err != nil {
			return err
		}
		err = tx.Bucket(bucketKeys).ForEach(func(k, v []byte) error {
			var ik idemKey
			if err := json.Unmarshal(v, &ik); err != nil {
				return fmt.Errorf("idempotency key: %w", err)
			}
			s.keys[string(k)] = ik
			return nil
		})
		if err != nil {
			return err
		}
		return tx.Bucket(bucketGone).ForEach(func(k, v []byte) error {
			var t tombstone
			if err := json.Unmarshal(v, &t); err != nil {
				return fmt.Errorf("tombstone %s: %w", k, err)
			}
			s.gone[string(k)] = t
			return nil
		})
	})
}

func encodeRecord(j job.Job, key string, ceiling int64) ([]byte, error) {
	return json.Marshal(record{Job: j, Request: j.Request, Owner: j.Owner, Key: key, SeqCeiling: ceiling})
}

// putJob writes one job. The group commit lets concurrent changes of many
// jobs share one transaction and one fsync.
func (d *boltDisk) putJob(j job.Job, key string, ceiling int64) error {
	v, err := encodeRecord(j, key, ceiling)
	if err != nil {
		return err
	}
	return d.write(func() error {
		return d.commits.update(func(tx *bolt.Tx) error {
			return tx.Bucket(bucketJobs).Put([]byte(j.Code), v)
		})
	})
}

// putCheckpoints writes the progress snapshots in one change of the group
// commit. A job deleted since, or stored since at a higher seq (a durable
// change that went first), is left as it is: a checkpoint never brings a
// job back nor takes one back in time. (At the same seq the snapshot is
// the same; only the ceiling may differ, lowered at close.) Unlike putJob
// it never gives up the disk reserve: that room is for running jobs to
// fail.
func (d *boltDisk) putCheckpoints(cps []checkpoint) error {
	values := make([][]byte, len(cps))
	for i, c := range cps {
		v, err := encodeRecord(c.job, c.key, c.ceiling)
		if err != nil {
			return err
		}
		values[i] = v
	}
	return StorageError(d.commits.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketJobs)
		for i, c := range cps {
			if storedSeq, ok := seqOf(b.Get([]byte(c.job.Code))); !ok || storedSeq > c.job.Seq {
				continue
			}
			if err := b.Put([]byte(c.job.Code), values[i]); err != nil {
				return err
			}
		}
		return nil
	}))
}

// seqOf reads the seq of a stored record; ok is false if there is none.
// An unreadable record reads as seq 0, so a checkpoint replaces it.
func seqOf(v []byte) (seq int64, ok bool) {
	if v == nil {
		return 0, false
	}
	var r struct {
		Job struct {
			Seq int64 `json:"seq"`
		} `json:"job"`
	}
	_ = json.Unmarshal(v, &r)
	return r.Job.Seq, true
}

func (d *boltDisk) createJob(j job.Job, key string, k idemKey) error {
	v, err := encodeRecord(j, key, 0)
	if err != nil {
		return err
	}
	var kv []byte
	if key != "" {
		if kv, err = json.Marshal(k); err != nil {
			return err
		}
	}
	// A new job only when the disk has room for the reserve: the room it
	// frees is for the jobs already running.
	if err := d.reserve.roomForNew(); err != nil {
		return err
	}
	return StorageError(d.commits.update(func(tx *bolt.Tx) error {
		if kv != nil {
			if err := tx.Bucket(bucketKeys).Put([]byte(keyID(j.Owner, key)), kv); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketJobs).Put([]byte(j.Code), v)
	}))
}

func (d *boltDisk) deleteJob(code string, tomb *tombstone) error {
	var tv []byte
	if tomb != nil {
		var err error
		if tv, err = json.Marshal(tomb); err != nil {
			return err
		}
	}
	return d.write(func() error {
		return d.commits.update(func(tx *bolt.Tx) error {
			if err := tx.Bucket(bucketJobs).Delete([]byte(code)); err != nil {
				return err
			}
			if tv != nil {
				return tx.Bucket(bucketGone).Put([]byte(code), tv)
			}
			return nil
		})
	})
}

// sweep drops keys and tombstones older than cutoff.
func (d *boltDisk) sweep(cutoff time.Time) error {
	return StorageError(d.db.Update(func(tx *bolt.Tx) error {
		if err := deleteOlder(tx.Bucket(bucketKeys), cutoff, func(v []byte) (time.Time, error) {
			var k idemKey
			err := json.Unmarshal(v, &k)
			return k.CreatedAt, err
		}); err != nil {
			return err
		}
		return deleteOlder(tx.Bucket(bucketGone), cutoff, func(v []byte) (time.Time, error) {
			var t tombstone
			err := json.Unmarshal(v, &t)
			return t.At, err
		})
	}))
}

func deleteOlder(b *bolt.Bucket, cutoff time.Time, at func([]byte) (time.Time, error)) error {
	var old [][]byte
	err := b.ForEach(func(k, v []byte) error {
		t, err := at(v)
		if err != nil || t.Before(cutoff) {
			old = append(old, k) // an unreadable entry is dropped too
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, k := range old {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

func (d *boltDisk) close() error {
	d.commits.close()
	return d.db.Close()
}
