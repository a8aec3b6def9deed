// Package config is the BFF's settings: flags, each with an environment
// variable as its default (docs/configuration.md lists them, generated from
// -help).
package config

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"github.com/exportstream/exportstream/bff/internal/backend"
	"github.com/exportstream/exportstream/internal/service"
)

// Config is what the BFF runs with.
type Config struct {
	Addr                 string
	BackendURL           string
	ServiceToken         string
	StaticDir            string
	SessionSecret        string
	SessionLifetime      time.Duration
	CookieSecure         bool
	AllowedOrigins       string
	MaxStreamsPerSession int
	MaxStreams           int
	BackendConns         int
	CreateRate           float64
	CreateBurst          int
	TrustedProxies       []netip.Prefix
	AddressSessionRate   float64
	AddressSessionBurst  int
	AddressCreateRate    float64
	AddressCreateBurst   int
	MaxStreamsPerAddress int
	Heartbeat            time.Duration
	Retry                time.Duration
	GiveUp               time.Duration
	Linger               time.Duration
	UpstreamIdle         time.Duration
	WriteTimeout         time.Duration
	ResponseWriteTimeout time.Duration
	ShutdownTimeout      time.Duration
	ReadHeaderTimeout    time.Duration
	MultiplexResync      time.Duration
	Scenarios            bool
	LogLevel             slog.Level
	Healthcheck          bool
	InitSecrets          string
}

// Parse reads the flags in args, over the environment; -help prints the
// usage to w and returns an error matching flag.ErrHelp.
func Parse(args []string, w io.Writer) (Config, error) {
	var c Config
	f := service.NewFlags("bff", w)
	f.String(&c.Addr, "addr", "BFF_ADDR", ":8080", "listen address")
	f.String(&c.BackendURL, "backend-url", "BACKEND_URL", "http://localhost:8081", "base URL of the export backend")
	f.Secret(&c.ServiceToken, "service-token", "SERVICE_TOKEN", "shared secret sent to the backend as 'Authorization: Bearer …'")
	f.String(&c.StaticDir, "static-dir", "STATIC_DIR", "client/dist/demo", "directory of the built demo page served at /")
	f.Secret(&c.SessionSecret, "session-secret", "SESSION_SECRET", "comma-separated keys of at least 32 bytes each: the first signs session cookies, every one is accepted (list a new key first to rotate, docs/security.md); empty: random, sessions end with the process")
	f.Duration(&c.SessionLifetime, "session-lifetime", "SESSION_LIFETIME", 24*time.Hour, "a session cookie is refused this long after it was issued; a browser's requests re-issue it once a quarter of this has gone by, so an active browser keeps its session")
	f.Command(&c.InitSecrets, "init-secrets", "write session_secret and service_token files of random bytes into this directory unless they exist, and exit: a deployment's first start makes its own secrets (docker-compose.yml)")
	f.Bool(&c.CookieSecure, "cookie-secure", "COOKIE_SECURE", false, "mark the session cookie Secure (behind HTTPS)")
	f.String(&c.AllowedOrigins, "allowed-origins", "ALLOWED_ORIGINS", "", "comma-separated origins, besides the BFF's own, that may change exports and get CORS")
	f.Int(&c.MaxStreamsPerSession, "max-streams-per-session", "MAX_STREAMS_PER_SESSION", 20, "open event streams per session before 429")
	f.Int(&c.MaxStreams, "max-streams", "MAX_STREAMS", 0, "open event streams in all before 503; 0: as many as the open-file limit allows, less headroom for other requests")
	f.Int(&c.BackendConns, "backend-max-conns", "BACKEND_MAX_CONNS", backend.DefaultMaxConns, "connections to the backend at most (its event stream, API calls, downloads); each is a file taken from the streams' budget")
	f.Float(&c.CreateRate, "create-rate", "CREATE_RATE", 5, "exports a session may start per second, sustained; 0 for no limit")
	f.Int(&c.CreateBurst, "create-burst", "CREATE_BURST", 20, "exports a session may start at once")
	// Per client address: sized for one office of some 500 browsers
	// behind one NAT address (docs/security.md).
	var trusted string
	f.String(&trusted, "trusted-proxies", "TRUSTED_PROXIES", "", "comma-separated CIDRs or addresses of the proxies in front of the BFF whose X-Forwarded-For is believed (walked from the right, the first address not listed is the client); empty: the TCP peer is the client")
	f.Float(&c.AddressSessionRate, "address-session-rate", "ADDRESS_SESSION_RATE", 10, "new sessions one client address (an IPv6 /64) may start per second, sustained; 0 for no limit")
	f.Int(&c.AddressSessionBurst, "address-session-burst", "ADDRESS_SESSION_BURST", 200, "new sessions one client address may start at once")
	f.Float(&c.AddressCreateRate, "address-create-rate", "ADDRESS_CREATE_RATE", 20, "exports one client address (an IPv6 /64) may start per second, sustained, whatever its sessions; 0 for no limit")
	f.Int(&c.AddressCreateBurst, "address-create-burst", "ADDRESS_CREATE_BURST", 200, "exports one client address may start at once")
	f.Int(&c.MaxStreamsPerAddress, "max-streams-per-address", "MAX_STREAMS_PER_ADDRESS", 1000, "open event streams from one client address (an IPv6 /64), whatever their sessions, before 429; 0 for no cap")
	f.Duration(&c.Heartbeat, "heartbeat", "HEARTBEAT_INTERVAL", 15*time.Second, "silence before a ': ping' comment on event streams")
	f.Duration(&c.Retry, "retry", "SSE_RETRY", 2*time.Second, "base reconnect delay advertised to browsers, jittered up to +50%")
	f.Duration(&c.GiveUp, "upstream-giveup", "UPSTREAM_GIVEUP", 30*time.Second, "how long the backend may be unreachable before browsers get ERROR")
	f.Duration(&c.UpstreamIdle, "upstream-idle-timeout", "UPSTREAM_IDLE_TIMEOUT", 45*time.Second, "reconnect an upstream that sent nothing (not even a heartbeat) this long; keep it above the backend's heartbeat")
	f.Duration(&c.Linger, "linger", "UPSTREAM_LINGER", 5*time.Second, "how long an upstream stays open after its last browser left")
	f.Duration(&c.WriteTimeout, "write-timeout", "STREAM_WRITE_TIMEOUT", 10*time.Second, "a browser whose stream writes block this long is disconnected")
	f.Duration(&c.ResponseWriteTimeout, "response-write-timeout", "RESPONSE_WRITE_TIMEOUT", 30*time.Second, "a browser whose write of a response other than an event stream (a download, a list) blocks this long is cut off, and the backend request behind it cancelled; each write gets it anew, so a slow download that keeps moving is not cut; 0 turns it off")
	f.Duration(&c.ShutdownTimeout, "shutdown-timeout", "SHUTDOWN_TIMEOUT", 10*time.Second, "time given to requests to finish on shutdown")
	f.Duration(&c.MultiplexResync, "multiplex-resync", "MULTIPLEX_RESYNC", 10*time.Second, "how often an open /api/events stream re-lists its session's jobs, to join those created through another BFF instance; 0 turns it off")
	f.OnOff(&c.Scenarios, "scenarios", "SCENARIOS", "on: an event stream may script a relay failure (?fault=relay-gives-up: docs/api.md) for demos and tests; never in production")
	f.Duration(&c.ReadHeaderTimeout, "read-header-timeout", "READ_HEADER_TIMEOUT", 10*time.Second, "a client must send a request's headers within this, or it is cut off (slowloris)")
	if err := f.Parse(args); err != nil {
		return c, err
	}
	c.LogLevel, c.Healthcheck = f.LogLevel, f.Healthcheck
	var err error
	if c.TrustedProxies, err = parseTrustedProxies(trusted); err != nil {
		return c, fmt.Errorf("-trusted-proxies: %w", err)
	}
	return c, c.validate()
}

func (c Config) validate() error {
	if c.Heartbeat <= 0 || c.Retry <= 0 || c.GiveUp <= 0 || c.ReadHeaderTimeout <= 0 {
		return errors.New("-heartbeat, -retry, -upstream-giveup and -read-header-timeout must be positive")
	}
	if c.SessionLifetime < time.Second {
		return errors.New("-session-lifetime must be at least 1s")
	}
	if c.ResponseWriteTimeout < 0 {
		return errors.New("-response-write-timeout must not be negative")
	}
	if c.AddressSessionRate > 0 && c.AddressSessionBurst < 1 || c.AddressCreateRate > 0 && c.AddressCreateBurst < 1 {
		return errors.New("-address-session-burst and -address-create-burst must be at least 1 when their rate is not 0")
	}
	return nil
}

// Origins is -allowed-origins as a list, without empty entries or trailing
// slashes.
func (c Config) Origins() []string {
	var out []string
	for _, part := range strings.Split(c.AllowedOrigins, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, strings.TrimSuffix(part, "/"))
		}
	}
	return out
}

// parseTrustedProxies reads a comma-separated list of CIDRs and addresses
// (an address is its /32 or /128) into prefixes; empty entries are skipped.
func parseTrustedProxies(list string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, part := range strings.Split(list, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		if strings.Contains(part, "/") {
			p, err := netip.ParsePrefix(part)
			if err != nil {
				return nil, fmt.Errorf("trusted proxy %q: %w", part, err)
			}
			if p.Addr().Is4In6() && p.Bits() >= 96 { // ::ffff:10.0.0.0/104 is 10.0.0.0/8
				p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
			}
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(part)
		if err != nil {
			return nil, fmt.Errorf("trusted proxy %q: %w", part, err)
		}
		a = a.Unmap().WithZone("")
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}
