// Package config is the backend's settings: flags, each with an environment
// variable as its default (docs/configuration.md lists them, generated from
// -help).
package config

import (
	"errors"
	"io"
	"log/slog"
	"runtime"
	"time"

	"github.com/exportstream/exportstream/backend/internal/eventmux"
	"github.com/exportstream/exportstream/backend/internal/store"
	"github.com/exportstream/exportstream/internal/service"
)

// Config is what the backend runs with.
type Config struct {
	Addr              string
	DataDir           string
	Memory            bool
	Workers           int
	QueueSize         int
	MaxActivePerOwner int
	Retention         time.Duration
	ProgressInterval  time.Duration
	ProgressCkpt      time.Duration
	Heartbeat         time.Duration
	Retry             time.Duration
	ServiceToken      string
	ShutdownTimeout   time.Duration
	LogLevel          slog.Level
	Healthcheck       bool
	RedisURL          string
	ClaimIdle         time.Duration
	DiskReserve       int
	MaxSubscriptions  int
	Scenarios         bool
}

// Parse reads the flags in args, over the environment; -help prints the
// usage to w and returns an error matching flag.ErrHelp.
func Parse(args []string, w io.Writer) (Config, error) {
	var c Config
	f := service.NewFlags("backend", w)
	f.String(&c.Addr, "addr", "BACKEND_ADDR", ":8081", "listen address")
	f.StringOrEmpty(&c.DataDir, "data-dir", "DATA_DIR", "data", "directory of the embedded store and the files; empty: in memory")
	f.Bool(&c.Memory, "memory", "MEMORY", false, "keep everything in memory, nothing survives a restart")
	f.Int(&c.Workers, "workers", "WORKERS", 0, "exports generated at once; 0: one per CPU")
	f.Int(&c.QueueSize, "queue-size", "QUEUE_SIZE", 1000, "exports waiting for a worker before creates get 503")
	f.Int(&c.MaxActivePerOwner, "max-active-per-owner", "MAX_ACTIVE_PER_OWNER", 100, "unfinished exports one owner may have before creates get 429; 0 for no cap")
	f.Duration(&c.Retention, "retention", "RETENTION", time.Hour, "how long finished exports and their files are kept")
	f.Duration(&c.ProgressInterval, "progress-interval", "PROGRESS_INTERVAL", 100*time.Millisecond, "at most one progress event of a job per this much of its schedule")
	f.Duration(&c.ProgressCkpt, "progress-checkpoint", "PROGRESS_CHECKPOINT", store.DefaultProgressCheckpoint, "embedded store: progress events are sent at once and written to disk this often (a crash loses at most this much progress; seqs still never repeat); 0: each written before it is sent")
	f.Duration(&c.Heartbeat, "heartbeat", "HEARTBEAT_INTERVAL", 15*time.Second, "silence before a ': ping' comment on event streams")
	f.Duration(&c.Retry, "retry", "SSE_RETRY", 2*time.Second, "reconnect delay advertised to EventSource clients")
	f.Secret(&c.ServiceToken, "service-token", "SERVICE_TOKEN", "when set, required as 'Authorization: Bearer …' on every /v1 call")
	f.Duration(&c.ShutdownTimeout, "shutdown-timeout", "SHUTDOWN_TIMEOUT", 10*time.Second, "time given to requests to finish on shutdown")
	f.String(&c.RedisURL, "redis-url", "REDIS_URL", "", "redis://… : share jobs, events and work with other replicas through Redis; DATA_DIR must then be a directory they all share")
	f.Duration(&c.ClaimIdle, "claim-idle", "REDIS_CLAIM_IDLE", 30*time.Second, "with Redis: a running export whose replica is silent this long is taken over by another")
	f.Int(&c.DiskReserve, "disk-reserve", "DISK_RESERVE", 4<<20, "bytes of the data directory's disk kept in reserve: given up when the disk fills so running exports can still be marked FAILED; creates get 507 until it can be written back; 0 for none")
	f.Int(&c.MaxSubscriptions, "max-subscriptions-per-stream", "MAX_SUBSCRIPTIONS_PER_STREAM", eventmux.DefaultMaxSubscriptions, "codes one multiplexed event stream (GET /v1/events) may have subscribed before more get 429")
	f.OnOff(&c.Scenarios, "scenarios", "SCENARIOS", "on: a create may script its export (failAt, startDelayMs, stallAt, …: docs/api.md) for demos and tests; never in production, where a browser could then script it")
	if err := f.Parse(args); err != nil {
		return c, err
	}
	c.LogLevel, c.Healthcheck = f.LogLevel, f.Healthcheck
	if c.Workers == 0 {
		c.Workers = runtime.NumCPU()
	}
	return c, c.validate()
}

func (c Config) validate() error {
	switch {
	case c.DiskReserve < 0:
		return errors.New("-disk-reserve must not be negative")
	case c.ProgressCkpt < 0:
		return errors.New("-progress-checkpoint must not be negative")
	case c.Workers < 1 || c.QueueSize < 1 || c.MaxSubscriptions < 1:
		return errors.New("-workers, -queue-size and -max-subscriptions-per-stream must be at least 1")
	case c.Retention <= 0 || c.ProgressInterval < 0 || c.Heartbeat <= 0 || c.Retry <= 0:
		return errors.New("-retention, -heartbeat and -retry must be positive")
	}
	return nil
}
