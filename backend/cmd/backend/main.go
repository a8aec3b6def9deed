// Command backend is the export job service: it accepts exports, generates
// their files and streams their progress over SSE. It is internal: browsers
// reach it only through the BFF.
package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/exportstream/exportstream/backend/internal/config"
	"github.com/exportstream/exportstream/backend/internal/httpapi"
	"github.com/exportstream/exportstream/backend/internal/worker"
	"github.com/exportstream/exportstream/internal/service"
)

func main() { service.Main("backend", run) }

func run(ctx context.Context, args []string, stdout io.Writer) error {
	cfg, err := config.Parse(args, stdout)
	if err != nil {
		return err
	}
	if cfg.Healthcheck {
		return service.Healthcheck(ctx, cfg.Addr)
	}
	log := service.NewLogger(stdout, cfg.LogLevel)

	st, filesDir, cleanup, err := openStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer cleanup()
	queue, err := sharedQueue(ctx, st, cfg, log)
	if err != nil {
		return err
	}
	generation := httpapi.GenerationHistogram()
	pool, err := worker.New(st, worker.Config{
		Workers:          cfg.Workers,
		QueueSize:        cfg.QueueSize,
		FilesDir:         filesDir,
		ProgressInterval: cfg.ProgressInterval,
		Retention:        cfg.Retention,
		MinFree:          int64(cfg.DiskReserve),
		Durable:          !cfg.Memory || cfg.RedisURL != "",
		OnFinish:         httpapi.ObserveGeneration(generation),
		Queue:            queue,
	}, log)
	if err != nil {
		return err
	}
	defer pool.Close() // runs before cleanup: jobs checkpoint, then the store closes
	if err := pool.Resume(ctx); err != nil {
		return err
	}
	api := httpapi.New(httpapi.Config{
		Store: st, Pool: pool, Logger: log, Heartbeat: cfg.Heartbeat, Retry: cfg.Retry,
		ServiceToken: cfg.ServiceToken, MaxActivePerOwner: cfg.MaxActivePerOwner, Scenarios: cfg.Scenarios,
		Mux: eventHub(st, cfg, log),
	})
	api.Register(generation)

	sweepCtx, stopSweeper := context.WithCancel(ctx)
	var housekeeping sync.WaitGroup
	housekeeping.Go(func() { pool.RunSweeper(sweepCtx, min(cfg.Retention/10, time.Minute)) })
	if rq, ok := queue.(*worker.RedisQueue); ok {
		housekeeping.Go(func() { rq.RunReconciler(sweepCtx, st.Unfinished) })
	}
	defer func() { stopSweeper(); housekeeping.Wait() }()

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	// No WriteTimeout: it would cut event streams. Slow headers are bounded.
	srv := &http.Server{Handler: api, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	srv.RegisterOnShutdown(api.CloseStreams)
	log.Info("backend listening", "addr", ln.Addr().String(), "dataDir", filesDir, "memory", cfg.Memory, "workers", cfg.Workers)
	return service.Serve(ctx, srv, ln, cfg.ShutdownTimeout)
}
