package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/exportstream/exportstream/backend/internal/job"
)

// Redis is the Store that several backend replicas share.
//
// Layout, every key under Prefix:
//
//	job:<code>            hash {seq, data}: data is the record JSON (as in bbolt)
//	owner:<owner>         zset of codes by createdAt (List)
//	idem:<owner>\0<key>   idemKey JSON, TTL = retention
//	gone:<code>           tombstone JSON, TTL = retention
//	unfinished, terminal  zsets of codes by createdAt / updatedAt (Unfinished, Sweep)
//	idems, tombs          zsets of the keys above by age (Sweep at any now)
//	stats:status          hash status → count; stats:active: owner → unfinished count
//	changed               pub/sub channel: the code of every job that changed
//
// Every change is one Lua script, so a change, its indexes, its counters
// and its notification are atomic; Update is a compare-and-set on seq.
// Progress ticks included, every change is written before it is
// published: unlike the embedded store, which can publish a tick from
// memory and checkpoint it later, here the other replicas read the
// snapshot they relay from Redis, so a tick not yet written is one they
// could not see (and seqs carry no ceiling: 0 in the record).
//
// Watch is a pub/sub notification plus a re-read, not a replay: events are
// snapshots, so a watcher only ever needs the latest job, which is stored.
// A lost notification (a dropped connection) costs a re-read, never an
// event: every watcher is woken when the subscription is re-established.
type Redis struct {
	rdb       *redis.Client
	prefix    string
	retention time.Duration
	now       func() time.Time

	pubsub *redis.PubSub
	done   chan struct{}
	wg     sync.WaitGroup

	mu      sync.Mutex
	waiters map[string][]*waiter // code → its watchers
}

// RedisOptions configures OpenRedis.
type RedisOptions struct {
	// Prefix namespaces every key, so several deployments (or tests) can
	// share one Redis. Default "exportstream:".
	Prefix string
	// Retention is the TTL of idempotency keys and tombstones.
	Retention time.Duration
}

// OpenRedis connects to the Redis at url (redis://…) and checks it answers.
func OpenRedis(ctx context.Context, url string, opts RedisOptions) (*Redis, error) {
	o, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("open redis store: REDIS_URL: %w", err)
	}
	if opts.Prefix == "" {
		opts.Prefix = "exportstream:"
	}
	if opts.Retention <= 0 {
		opts.Retention = time.Hour
	}
	rdb := redis.NewClient(o)
	if err := rdb.Ping(ctx).Err(); err != nil {
		_ = rdb.Close()
		return nil, fmt.Errorf("open redis store: %w", err)
	}
	s := &Redis{
		rdb: rdb, prefix: opts.Prefix, retention: opts.Retention, now: time.Now,
		done: make(chan struct{}), waiters: make(map[string][]*waiter),
	}
	s.pubsub = rdb.Subscribe(ctx, s.k("changed"))
	// Receive waits for the subscription, so no change after OpenRedis
	// returns can be missed.
	if _, err := s.pubsub.Receive(ctx); err != nil {
		_ = s.pubsub.Close()
		_ = rdb.Close()
		return nil, fmt.Errorf("open redis store: subscribe: %w", err)
	}
	s.wg.Add(1)
	go s.listen()
	return s, nil
}

// Client is the connection, for the work queue to share.
func (s *Redis) Client() *redis.Client { return s.rdb }

// Prefix is the key prefix, for the work queue to share.
func (s *Redis) Prefix() string { return s.prefix }

func (s *Redis) k(parts ...string) string { return s.prefix + strings.Join(parts, ":") }

// listen wakes the watchers of every job that changed. On a
// (re)subscription it wakes them all: notifications may have been lost.
func (s *Redis) listen() {
	defer s.wg.Done()
	ch := s.pubsub.ChannelWithSubscriptions(redis.WithChannelHealthCheckInterval(5 * time.Second))
	for {
		select {
		case <-s.done:
			return
		case m, ok := <-ch:
			if !ok {
				return
			}
			switch m := m.(type) {
			case *redis.Message:
				s.wake(notification(m.Payload))
			case *redis.Subscription:
				s.wakeAll()
			}
		}
	}
}

// waiter is one Watch call's channel, or one WatchNotify call's Waker.
// Until the watcher has read the job (seq < 0) it records the highest seq
// notified meanwhile, so a notification older than its snapshot (the
// create's, say) does not wake it, and a newer one that raced the read is
// not lost.
type waiter struct {
	seq, seen int64
	ch        chan struct{} // Watch's
	waker     Waker         // WatchNotify's
	// stop ends the watch of a Watch caller's context that drops w when
	// the watcher stops watching: a stream that ends (or watched a job
	// that will never change again) leaves nothing behind. A Waker's
	// watcher calls Unwatch instead.
	stop func() bool
}

// closeLocked wakes w's watcher and ends its context watch; s.mu is held.
func (w *waiter) closeLocked() {
	if w.waker != nil {
		w.waker.Wake()
	} else {
		close(w.ch)
	}
	if w.stop != nil {
		w.stop()
	}
}

// wake closes the channels of code's watchers whose snapshot is older
// than seq (deletion notifies math.MaxInt64).
func (s *Redis) wake(code string, seq int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ws := s.waiters[code]
	kept := ws[:0]
	for _, w := range ws {
		switch {
		case w.seq < 0:
			w.seen = max(w.seen, seq)
		case seq > w.seq:
			w.closeLocked()
			continue
		}
		kept = append(kept, w)
	}
	if len(kept) == 0 {
		delete(s.waiters, code)
	} else {
		s.waiters[code] = kept
	}
}

func (s *Redis) wakeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for code, ws := range s.waiters {
		for _, w := range ws {
			w.closeLocked()
		}
		delete(s.waiters, code)
	}
}

// register adds a waiter for code: waker's, or with a channel if nil.
func (s *Redis) register(code string, waker Waker) *waiter {
	w := &waiter{seq: -1, waker: waker}
	if waker == nil {
		w.ch = make(chan struct{})
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.waiters[code] = append(s.waiters[code], w)
	return w
}

// settle records the seq w's watcher read, or closes w at once if a newer
// change was notified while it read; seq < 0 drops w (the read failed).
// A settled waiter is dropped when ctx, its watcher's, ends.
func (s *Redis) settle(ctx context.Context, code string, w *waiter, seq int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !slices.Contains(s.waiters[code], w) {
		return // wakeAll has closed it already
	}
	if seq >= 0 && w.seen <= seq {
		w.seq = seq
		if w.waker == nil {
			w.stop = context.AfterFunc(ctx, func() { s.drop(code, w) })
		}
		return
	}
	if seq >= 0 {
		w.closeLocked()
	}
	s.removeLocked(code, w)
}

// drop removes w, whose watcher stopped watching, if it is still there.
func (s *Redis) drop(code string, w *waiter) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if slices.Contains(s.waiters[code], w) {
		close(w.ch)
		s.removeLocked(code, w)
	}
}

// Unwatch implements Store.Unwatch.
func (s *Redis) Unwatch(code string, waker Waker) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ws := s.waiters[code]
	if i := slices.IndexFunc(ws, func(w *waiter) bool { return w.waker == waker }); i >= 0 {
		s.removeLocked(code, ws[i])
	}
}

func (s *Redis) removeLocked(code string, w *waiter) {
	s.waiters[code] = slices.DeleteFunc(s.waiters[code], func(x *waiter) bool { return x == w })
	if len(s.waiters[code]) == 0 {
		delete(s.waiters, code)
	}
}

// notification parses "<code> <seq>" ("<code> D" for a deletion).
func notification(payload string) (string, int64) {
	code, seq, _ := strings.Cut(payload, " ")
	n, err := strconv.ParseInt(seq, 10, 64)
	if err != nil {
		return code, math.MaxInt64
	}
	return code, n
}

// RedisError wraps a go-redis error for op, marking failures to reach
// Redis as job.ErrStoreUnavailable (503 with Retry-After); errors Redis
// itself answers stay internal.
func RedisError(op string, err error) error { return unavailable(op, err) }

func unavailable(op string, err error) error {
	if err == nil {
		return nil
	}
	var netErr net.Error
	var rErr redis.Error
	switch {
	case errors.As(err, &netErr), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, redis.ErrClosed), errors.Is(err, redis.ErrPoolTimeout),
		errors.Is(err, context.DeadlineExceeded):
	case errors.As(err, &rErr) && !isTransientReply(rErr.Error()):
		return fmt.Errorf("%s: %w", op, err)
	case errors.As(err, &rErr):
	default:
		return fmt.Errorf("%s: %w", op, err)
	}
	return fmt.Errorf("%s: %w (%w)", op, job.ErrStoreUnavailable, err)
}

// isTransientReply: Redis answers these while it starts or fails over.
func isTransientReply(msg string) bool {
	for _, p := range []string{"LOADING", "MASTERDOWN", "READONLY", "TRYAGAIN", "CLUSTERDOWN"} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}

func millis(t time.Time) int64 { return t.UnixMilli() }

func boolArg(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// createScript: KEYS job, owner zset, unfinished, terminal, status hash,
// active hash, idem key ("" for none), idems zset. ARGV seq, data, code,
// createdAt ms, status, owner, terminal?, idem JSON, ttl ms, channel,
// idem member. Returns {1} created, {0, idem JSON} key seen, {-1} code taken.
var createScript = redis.NewScript(`
if ARGV[8] ~= '' then
  local prev = redis.call('GET', KEYS[7])
  if prev then return {0, prev} end
end
if redis.call('EXISTS', KEYS[1]) == 1 then return {-1} end
if ARGV[8] ~= '' then
  redis.call('SET', KEYS[7], ARGV[8], 'PX', ARGV[9])
  redis.call('ZADD', KEYS[8], ARGV[4], ARGV[11])
end
redis.call('HSET', KEYS[1], 'seq', ARGV[1], 'data', ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[3])
redis.call('HINCRBY', KEYS[5], ARGV[5], 1)
if ARGV[7] == '1' then
  redis.call('ZADD', KEYS[4], ARGV[4], ARGV[3])
else
  redis.call('ZADD', KEYS[3], ARGV[4], ARGV[3])
  redis.call('HINCRBY', KEYS[6], ARGV[6], 1)
end
redis.call('PUBLISH', ARGV[10], ARGV[3] .. ' ' .. ARGV[1])
return {1}
`)

// updateScript: KEYS job, status hash, active hash, unfinished, terminal.
// ARGV expected seq, new seq, data, old status, new status, owner, code,
// became terminal?, is terminal?, updatedAt ms, channel.
// Returns 1 stored, 0 seq moved on (retry), -1 no such job.
var updateScript = redis.NewScript(`
local seq = redis.call('HGET', KEYS[1], 'seq')
if not seq then return -1 end
if seq ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'seq', ARGV[2], 'data', ARGV[3])
if ARGV[4] ~= ARGV[5] then
  redis.call('HINCRBY', KEYS[2], ARGV[4], -1)
  redis.call('HINCRBY', KEYS[2], ARGV[5], 1)
end
if ARGV[8] == '1' then
  redis.call('HINCRBY', KEYS[3], ARGV[6], -1)
  redis.call('ZREM', KEYS[4], ARGV[7])
end
if ARGV[9] == '1' then
  redis.call('ZADD', KEYS[5], ARGV[10], ARGV[7])
end
redis.call('PUBLISH', ARGV[11], ARGV[7] .. ' ' .. ARGV[2])
return 1
`)

// removeScript: KEYS job, owner zset, unfinished, terminal, status hash,
// active hash, gone key, tombs zset. ARGV expected seq, code, status,
// owner, terminal?, tomb JSON ("" for none), ttl ms, tomb at ms, channel.
// The job's idempotency key stays until it expires (see Store.Delete).
// Returns 1 removed, 0 seq moved on (retry), -1 no such job.
var removeScript = redis.NewScript(`
local seq = redis.call('HGET', KEYS[1], 'seq')
if not seq then return -1 end
if seq ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('ZREM', KEYS[3], ARGV[2])
redis.call('ZREM', KEYS[4], ARGV[2])
redis.call('HINCRBY', KEYS[5], ARGV[3], -1)
if ARGV[5] ~= '1' then redis.call('HINCRBY', KEYS[6], ARGV[4], -1) end
if ARGV[6] ~= '' then
  redis.call('SET', KEYS[7], ARGV[6], 'PX', ARGV[7])
  redis.call('ZADD', KEYS[8], ARGV[8], ARGV[2])
end
redis.call('PUBLISH', ARGV[9], ARGV[2] .. ' D')
return 1
`)

func (s *Redis) idemMember(owner, key string) string { return keyID(owner, key) }

// Create implements Store.Create.
func (s *Redis) Create(ctx context.Context, j job.Job, key string) (job.Job, bool, error) {
	data, err := encodeRecord(j, key, 0)
	if err != nil {
		return job.Job{}, false, fmt.Errorf("create %s: %w", j.Code, err)
	}
	var idem []byte
	idemKeyName, member := "", ""
	if key != "" {
		if idem, err = json.Marshal(idemKey{Code: j.Code, Fingerprint: j.Request.Fingerprint(), CreatedAt: j.CreatedAt}); err != nil {
			return job.Job{}, false, fmt.Errorf("create %s: %w", j.Code, err)
		}
		member = s.idemMember(j.Owner, key)
		idemKeyName = s.k("idem", member)
	}
	res, err := createScript.Run(ctx, s.rdb,
		[]string{s.k("job", j.Code), s.k("owner", j.Owner), s.k("unfinished"), s.k("terminal"), s.k("stats", "status"), s.k("stats", "active"), idemKeyName, s.k("idems")},
		j.Seq, data, j.Code, millis(j.CreatedAt), string(j.Status), j.Owner, boolArg(j.Status.Terminal()),
		string(idem), s.retention.Milliseconds(), s.k("changed"), member,
	).Slice()
	if err != nil {
		return job.Job{}, false, unavailable("create "+j.Code, err)
	}
	switch res[0].(int64) {
	case 1:
		return j, true, nil
	case -1:
		return job.Job{}, false, fmt.Errorf("create %s: code already exists", j.Code)
	}
	var prev idemKey
	if err := json.Unmarshal([]byte(res[1].(string)), &prev); err != nil {
		return job.Job{}, false, fmt.Errorf("create: idempotency key: %w", err)
	}
	if prev.Fingerprint != j.Request.Fingerprint() {
		return job.Job{}, false, job.ErrKeyReused
	}
	return replay(s.Get(ctx, prev.Code))
}

// read loads a job and the idempotency key it was created with.
func (s *Redis) read(ctx context.Context, code string) (job.Job, string, error) {
	data, err := s.rdb.HGet(ctx, s.k("job", code), "data").Result()
	if errors.Is(err, redis.Nil) {
		return job.Job{}, "", job.ErrNotFound
	} else if err != nil {
		return job.Job{}, "", unavailable("get "+code, err)
	}
	return decodeRecord(code, data)
}

func decodeRecord(code, data string) (job.Job, string, error) {
	var r record
	if err := json.Unmarshal([]byte(data), &r); err != nil {
		return job.Job{}, "", fmt.Errorf("job %s: %w", code, err)
	}
	r.Job.Request, r.Job.Owner = r.Request, r.Owner
	return r.Job, r.Key, nil
}

// Get implements Store.Get.
func (s *Redis) Get(ctx context.Context, code string) (job.Job, error) {
	j, _, err := s.read(ctx, code)
	return j, err
}

// maxCASAttempts bounds Update's retries when other writers keep winning.
const maxCASAttempts = 100

// Update is a compare-and-set on seq, retried when another writer (a
// cancel, another replica) changed the job in between: change may run more
// than once, each time on the latest job.
func (s *Redis) Update(ctx context.Context, code string, change func(*job.Job) error) (job.Job, error) {
	for range maxCASAttempts {
		cur, key, err := s.read(ctx, code)
		if err != nil {
			return job.Job{}, err
		}
		next := cur
		if err := change(&next); err != nil {
			return cur, err
		}
		next.Seq = cur.Seq + 1
		next.UpdatedAt = s.now().UTC()
		data, err := encodeRecord(next, key, 0)
		if err != nil {
			return cur, fmt.Errorf("update %s: %w", code, err)
		}
		res, err := updateScript.Run(ctx, s.rdb,
			[]string{s.k("job", code), s.k("stats", "status"), s.k("stats", "active"), s.k("unfinished"), s.k("terminal")},
			cur.Seq, next.Seq, data, string(cur.Status), string(next.Status), cur.Owner, code,
			boolArg(!cur.Status.Terminal() && next.Status.Terminal()), boolArg(next.Status.Terminal()),
			millis(next.UpdatedAt), s.k("changed"),
		).Int64()
		if err != nil {
			return cur, unavailable("update "+code, err)
		}
		switch res {
		case 1:
			return next, nil
		case -1:
			return job.Job{}, job.ErrNotFound
		}
	}
	return job.Job{}, fmt.Errorf("update %s: %d concurrent changes won in a row", code, maxCASAttempts)
}

// Watch registers for notifications before reading, so a change between
// the read and the wait is never missed.
func (s *Redis) Watch(ctx context.Context, code string) (job.Job, <-chan struct{}, error) {
	w := s.register(code, nil)
	j, err := s.Get(ctx, code)
	if err != nil {
		s.settle(ctx, code, w, -1)
		return job.Job{}, nil, err
	}
	s.settle(ctx, code, w, j.Seq)
	return j, w.ch, nil
}

// WatchNotify registers before reading, as Watch does.
func (s *Redis) WatchNotify(ctx context.Context, code string, waker Waker) (job.Job, error) {
	w := s.register(code, waker)
	j, err := s.Get(ctx, code)
	if err != nil {
		s.settle(ctx, code, w, -1)
		return job.Job{}, err
	}
	s.settle(ctx, code, w, j.Seq)
	return j, nil
}

// load reads the jobs of codes, skipping those deleted meanwhile.
func (s *Redis) load(ctx context.Context, codes []string) ([]job.Job, error) {
	if len(codes) == 0 {
		return nil, nil
	}
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.StringCmd, len(codes))
	for i, c := range codes {
		cmds[i] = pipe.HGet(ctx, s.k("job", c), "data")
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, unavailable("load jobs", err)
	}
	out := make([]job.Job, 0, len(codes))
	for i, cmd := range cmds {
		data, err := cmd.Result()
		if errors.Is(err, redis.Nil) {
			continue
		} else if err != nil {
			return nil, unavailable("load jobs", err)
		}
		j, _, err := decodeRecord(codes[i], data)
		if err != nil {
			return nil, err
		}
		out = append(out, j)
	}
	return out, nil
}

// List implements Store.List.
func (s *Redis) List(ctx context.Context, owner string) ([]job.Job, error) {
	codes, err := s.rdb.ZRange(ctx, s.k("owner", owner), 0, -1).Result()
	if err != nil {
		return nil, unavailable("list", err)
	}
	out, err := s.load(ctx, codes)
	if err != nil {
		return nil, err
	}
	// The zset's scores are milliseconds; sort exactly as the embedded store.
	slices.SortFunc(out, func(a, b job.Job) int {
		if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
			return c
		}
		return compareStrings(b.Code, a.Code)
	})
	return out, nil
}

// Delete implements Store.Delete.
func (s *Redis) Delete(ctx context.Context, code string) error {
	return s.remove(ctx, code, nil)
}

func (s *Redis) remove(ctx context.Context, code string, tomb *tombstone) error {
	var tv []byte
	if tomb != nil {
		var err error
		if tv, err = json.Marshal(tomb); err != nil {
			return fmt.Errorf("delete %s: %w", code, err)
		}
	}
	for range maxCASAttempts {
		cur, _, err := s.read(ctx, code)
		if err != nil {
			return err
		}
		tombAt := int64(0)
		if tomb != nil {
			tombAt = millis(tomb.At)
		}
		res, err := removeScript.Run(ctx, s.rdb,
			[]string{
				s.k("job", code), s.k("owner", cur.Owner), s.k("unfinished"), s.k("terminal"),
				s.k("stats", "status"), s.k("stats", "active"), s.k("gone", code), s.k("tombs"),
			},
			cur.Seq, code, string(cur.Status), cur.Owner, boolArg(cur.Status.Terminal()),
			string(tv), s.retention.Milliseconds(), tombAt, s.k("changed"),
		).Int64()
		if err != nil {
			return unavailable("delete "+code, err)
		}
		switch res {
		case 1:
			return nil
		case -1:
			return job.ErrNotFound
		}
	}
	return fmt.Errorf("delete %s: %d concurrent changes won in a row", code, maxCASAttempts)
}

// Expired implements Store.Expired.
func (s *Redis) Expired(ctx context.Context, code string) (string, bool, error) {
	v, err := s.rdb.Get(ctx, s.k("gone", code)).Result()
	if errors.Is(err, redis.Nil) {
		return "", false, nil
	} else if err != nil {
		return "", false, unavailable("expired "+code, err)
	}
	var t tombstone
	if err := json.Unmarshal([]byte(v), &t); err != nil {
		return "", false, fmt.Errorf("tombstone %s: %w", code, err)
	}
	return t.Owner, true, nil
}

// Sweep is safe to run on every replica at once: each removal is a
// compare-and-set, so a job is removed (and returned) at most once per
// successful call, and a second sweeper sees it gone.
func (s *Redis) Sweep(ctx context.Context, now time.Time, retention time.Duration) ([]job.Job, error) {
	cutoff := now.Add(-retention)
	// Strictly before the cutoff, as the embedded store: "(" excludes it.
	before := "(" + strconv.FormatInt(millis(cutoff), 10)
	codes, err := s.rdb.ZRangeArgs(ctx, redis.ZRangeArgs{Key: s.k("terminal"), ByScore: true, Start: "-inf", Stop: before}).Result()
	if err != nil {
		return nil, unavailable("sweep", err)
	}
	candidates, err := s.load(ctx, codes)
	if err != nil {
		return nil, err
	}
	var errs []error
	var deleted []job.Job
	for _, j := range candidates {
		if !j.Status.Terminal() || !j.UpdatedAt.Before(cutoff) {
			continue
		}
		var tomb *tombstone
		if j.File != nil {
			tomb = &tombstone{Owner: j.Owner, At: now.UTC()}
		}
		if err := s.remove(ctx, j.Code, tomb); err != nil {
			if !errors.Is(err, job.ErrNotFound) {
				errs = append(errs, err)
			}
			continue
		}
		deleted = append(deleted, j)
	}
	// Keys and tombstones carry a TTL too; this honours a sweep's own now.
	for _, idx := range []struct{ zset, kind string }{{"idems", "idem"}, {"tombs", "gone"}} {
		old, err := s.rdb.ZRangeArgs(ctx, redis.ZRangeArgs{Key: s.k(idx.zset), ByScore: true, Start: "-inf", Stop: before}).Result()
		if err != nil {
			errs = append(errs, unavailable("sweep", err))
			continue
		}
		if len(old) == 0 {
			continue
		}
		pipe := s.rdb.TxPipeline()
		for _, m := range old {
			pipe.Del(ctx, s.k(idx.kind, m))
			pipe.ZRem(ctx, s.k(idx.zset), m)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			errs = append(errs, unavailable("sweep", err))
		}
	}
	return deleted, errors.Join(errs...)
}

// Unfinished implements Store.Unfinished.
func (s *Redis) Unfinished(ctx context.Context) ([]job.Job, error) {
	codes, err := s.rdb.ZRange(ctx, s.k("unfinished"), 0, -1).Result()
	if err != nil {
		return nil, unavailable("unfinished", err)
	}
	out, err := s.load(ctx, codes)
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b job.Job) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return out, nil
}

// statsTimeout bounds Stats: metrics and the per-owner cap read it, and
// must not hang while Redis is away.
const statsTimeout = 2 * time.Second

// Stats reads the counters the scripts keep. With Redis away or slow it
// returns an error, never empty counts: those would switch the per-owner
// cap off.
func (s *Redis) Stats(ctx context.Context) (map[job.Status]int, map[string]int, error) {
	ctx, cancel := context.WithTimeout(ctx, statsTimeout)
	defer cancel()
	byStatus, active := make(map[job.Status]int), make(map[string]int)
	pipe := s.rdb.Pipeline()
	st := pipe.HGetAll(ctx, s.k("stats", "status"))
	ac := pipe.HGetAll(ctx, s.k("stats", "active"))
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, nil, unavailable("read stats", err)
	}
	for k, v := range st.Val() {
		if n, _ := strconv.Atoi(v); n > 0 {
			byStatus[job.Status(k)] = n
		}
	}
	for k, v := range ac.Val() {
		if n, _ := strconv.Atoi(v); n > 0 {
			active[k] = n
		}
	}
	return byStatus, active, nil
}

// Close implements Store.Close.
func (s *Redis) Close() error {
	close(s.done)
	err := s.pubsub.Close()
	s.wg.Wait()
	s.wakeAll()
	return errors.Join(err, s.rdb.Close())
}
