package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/exportstream/exportstream/backend/internal/config"
	"github.com/exportstream/exportstream/backend/internal/eventmux"
	"github.com/exportstream/exportstream/backend/internal/store"
	"github.com/exportstream/exportstream/backend/internal/worker"
)

// openStore opens the durable store in the data directory, or a memory
// store with files in a temporary directory removed at exit.
func openStore(ctx context.Context, cfg config.Config) (store.Store, string, func(), error) {
	if cfg.RedisURL != "" {
		return openRedis(ctx, cfg)
	}
	if cfg.Memory || cfg.DataDir == "" {
		dir, err := os.MkdirTemp("", "exportstream-files-")
		if err != nil {
			return nil, "", nil, fmt.Errorf("files dir: %w", err)
		}
		return store.NewMemory(), dir, func() { _ = os.RemoveAll(dir) }, nil
	}
	st, err := store.Open(cfg.DataDir, store.WithDiskReserve(int64(cfg.DiskReserve)), store.WithProgressCheckpoint(cfg.ProgressCkpt))
	if err != nil {
		return nil, "", nil, err
	}
	return st, filepath.Join(cfg.DataDir, "files"), func() { _ = st.Close() }, nil
}

// openRedis opens the store every replica shares. Files stay on disk, in
// DATA_DIR/files, which must be one directory for all replicas (a shared
// volume): the replica that serves a download is seldom the one that wrote it.
func openRedis(ctx context.Context, cfg config.Config) (store.Store, string, func(), error) {
	if cfg.DataDir == "" {
		return nil, "", nil, errors.New("REDIS_URL needs DATA_DIR: a directory every replica shares, for the files")
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	redisURL, err := withPoolForWorkers(cfg.RedisURL, cfg.Workers)
	if err != nil {
		return nil, "", nil, err
	}
	st, err := store.OpenRedis(ctx, redisURL, store.RedisOptions{Retention: cfg.Retention})
	if err != nil {
		return nil, "", nil, err
	}
	return st, filepath.Join(cfg.DataDir, "files"), func() { _ = st.Close() }, nil
}

// withPoolForWorkers gives the Redis connection pool room for every worker
// besides the API's own commands. An idle worker waits for work in a
// blocking XREADGROUP (up to a second) on a pooled connection; with
// go-redis's default pool of 10 connections per CPU, a replica with more
// workers than that made every request queue behind the idle workers (1–2 s
// per create with -workers 40 on 2 CPUs). A pool_size in REDIS_URL is kept.
func withPoolForWorkers(raw string, workers int) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("REDIS_URL: %w", err)
	}
	q := u.Query()
	if q.Has("pool_size") {
		return raw, nil
	}
	q.Set("pool_size", strconv.Itoa(workers+10*runtime.GOMAXPROCS(0)))
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// sharedQueue is the Redis work queue when the store is Redis, else nil
// (the pool's own in-process queue).
func sharedQueue(ctx context.Context, st store.Store, cfg config.Config, log *slog.Logger) (worker.Queue, error) {
	rs, ok := st.(*store.Redis)
	if !ok {
		return nil, nil
	}
	redis.SetLogger(redisLogger{log})
	q, err := worker.NewRedisQueue(ctx, rs.Client(), worker.RedisQueueOptions{
		Prefix: rs.Prefix(), ClaimIdle: cfg.ClaimIdle, MaxLen: cfg.QueueSize,
	}, log)
	if err != nil {
		return nil, fmt.Errorf("redis queue: %w", err)
	}
	log.Info("scaled out on Redis: shared store, events and work queue", "claimIdle", cfg.ClaimIdle, "filesDir", filepath.Join(cfg.DataDir, "files"))
	return q, nil
}

// eventHub keeps the multiplexed event streams; scaled out on Redis, their
// subscription calls travel between replicas on Redis channels.
func eventHub(st store.Store, cfg config.Config, log *slog.Logger) *eventmux.Hub {
	mc := eventmux.Config{Store: st, Logger: log, MaxSubscriptions: cfg.MaxSubscriptions}
	if rs, ok := st.(*store.Redis); ok {
		mc.Redis, mc.Prefix = rs.Client(), rs.Prefix()
	}
	return eventmux.New(mc)
}

// redisLogger sends go-redis's own messages (a failed dial, once per
// connection attempt) to the debug level: the errors that matter reach the
// log through the callers, once.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.DebugContext(ctx, "redis: "+fmt.Sprintf(format, v...))
}
