// Command bff is the backend-for-frontend that browsers talk to: it proxies
// the export API, relays job events (one multiplexed upstream per backend,
// shared by every browser) and serves the demo page.
package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/exportstream/exportstream/bff/internal/backend"
	"github.com/exportstream/exportstream/bff/internal/config"
	"github.com/exportstream/exportstream/bff/internal/connlimit"
	"github.com/exportstream/exportstream/bff/internal/httpapi"
	"github.com/exportstream/exportstream/bff/internal/relay"
	"github.com/exportstream/exportstream/bff/internal/session"
	"github.com/exportstream/exportstream/internal/service"
)

func main() { service.Main("bff", run) }

// The open-file budget (connlimit.Budget): files the process keeps for
// itself besides its backend connections and refusals (stdio, listener,
// epoll sets, the runtime's cgroup files: 13 idle), and connections kept
// from event streams for other requests. At this machine's 20,000 files
// and 32 backend connections: 19,936 connections, of which 19,904 may be
// streams.
const (
	ownFiles       = 16
	streamHeadroom = 32
)

func run(ctx context.Context, args []string, stdout io.Writer) error {
	cfg, err := config.Parse(args, stdout)
	if err != nil {
		return err
	}
	switch {
	case cfg.Healthcheck:
		return service.Healthcheck(ctx, cfg.Addr)
	case cfg.InitSecrets != "":
		return service.InitSecrets(cfg.InitSecrets, "session_secret", "service_token")
	}
	log := service.NewLogger(stdout, cfg.LogLevel)

	be, err := backend.NewLimited(cfg.BackendURL, cfg.ServiceToken, cfg.BackendConns)
	if err != nil {
		return err
	}
	keys := session.ParseKeys(cfg.SessionSecret)
	if len(keys) == 0 {
		log.Warn("SESSION_SECRET is not set: using a random one, so sessions end when this process does and do not span instances")
		keys = [][]byte{session.RandomSecret()}
	}
	sessions, err := session.New(keys, cfg.CookieSecure, cfg.SessionLifetime)
	if err != nil {
		return err
	}
	files, err := connlimit.FileLimit()
	if err != nil {
		return err
	}
	conns, streams := connlimit.Budget(files, ownFiles+cfg.BackendConns+connlimit.Refusing, streamHeadroom, cfg.MaxStreams)
	log.Info("open-file budget", "files", files, "connections", conns, "streams", streams)
	metrics := httpapi.NewMetrics()
	hub := relay.NewHub(be, relay.Config{
		GiveUp:      cfg.GiveUp,
		MinBackoff:  100 * time.Millisecond,
		MaxBackoff:  5 * time.Second,
		Buffer:      64,
		Linger:      cfg.Linger,
		IdleTimeout: cfg.UpstreamIdle,
	}, metrics, log)
	defer hub.Close()
	api, err := httpapi.New(httpapi.Config{
		Backend: be, Hub: hub, Sessions: sessions, Metrics: metrics, Logger: log,
		StaticDir: cfg.StaticDir, Heartbeat: cfg.Heartbeat, Retry: cfg.Retry, WriteTimeout: cfg.WriteTimeout,
		ResponseWriteTimeout: cfg.ResponseWriteTimeout,
		AllowedOrigins:       cfg.Origins(),
		MaxStreamsPerSession: cfg.MaxStreamsPerSession, MaxStreams: streams,
		CreateRate: cfg.CreateRate, CreateBurst: cfg.CreateBurst,
		TrustedProxies:     cfg.TrustedProxies,
		AddressSessionRate: cfg.AddressSessionRate, AddressSessionBurst: cfg.AddressSessionBurst,
		AddressCreateRate: cfg.AddressCreateRate, AddressCreateBurst: cfg.AddressCreateBurst,
		MaxStreamsPerAddress: cfg.MaxStreamsPerAddress,
		MultiplexResync:      cfg.MultiplexResync,
		Scenarios:            cfg.Scenarios, GiveUp: cfg.GiveUp,
	})
	if err != nil {
		return err
	}
	defer api.CloseStreams() // after Shutdown: waits for the streams' goroutines, before the hub closes

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	// Past the open-file budget a connection is answered 503 at once
	// rather than left waiting in the backlog.
	lim := connlimit.NewListener(ln, conns)
	defer func() { _ = lim.Close() }()
	// No WriteTimeout: it would cut event streams and long downloads (the
	// streams bound each write themselves, other responses get
	// -response-write-timeout per write). Slow headers are bounded.
	srv := &http.Server{Handler: api, ReadHeaderTimeout: cfg.ReadHeaderTimeout, IdleTimeout: 2 * time.Minute, ConnContext: connlimit.ConnContext}
	srv.RegisterOnShutdown(api.CloseStreams)
	log.Info("bff listening", "addr", ln.Addr().String(), "backend", cfg.BackendURL, "staticDir", cfg.StaticDir)
	return service.Serve(ctx, srv, lim, cfg.ShutdownTimeout)
}
