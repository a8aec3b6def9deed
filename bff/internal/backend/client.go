// Package backend is the BFF's client of the export backend: every request
// carries the owner (the browser's session), the service token and the
// forwarded prefix, so the backend scopes and shapes its answers.
package backend

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// ForwardedPrefix is where browsers see the export routes on the BFF. The
// backend builds file URLs from it, so events are relayed unchanged.
const ForwardedPrefix = "/api"

// Client talks to one backend.
type Client struct {
	base  *url.URL
	http  *http.Client
	token string
}

// DefaultMaxConns is New's bound on connections to the backend.
const DefaultMaxConns = 32

// New returns a client of the backend at baseURL that authenticates with
// serviceToken when it is set, with at most DefaultMaxConns connections.
func New(baseURL, serviceToken string) (*Client, error) {
	return NewLimited(baseURL, serviceToken, DefaultMaxConns)
}

// NewLimited is New with at most maxConns connections (so that they fit
// the open-file budget beside the browsers'): one carries the multiplexed
// event stream, the others creates, lists, subscription calls and
// downloads; a request past them waits for one to free.
func NewLimited(baseURL, serviceToken string, maxConns int) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("backend url %q must be an absolute http(s) URL", baseURL)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	t := &http.Transport{
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxConnsPerHost:       maxConns,
		MaxIdleConnsPerHost:   maxConns,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: 15 * time.Second,
	}
	// No client Timeout: it would cut event streams and large downloads;
	// every request carries its caller's context instead.
	return &Client{base: u, http: &http.Client{Transport: t}, token: serviceToken}, nil
}

// Do sends a request for owner to path on the backend.
func (c *Client) Do(ctx context.Context, method, path, owner string, body io.Reader, header http.Header) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base.String()+path, body)
	if err != nil {
		return nil, fmt.Errorf("backend request: %w", err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	c.setHeaders(req.Header, owner)
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("backend %s %s: %w", method, path, err)
	}
	return resp, nil
}

// StreamRequest is the request for the backend's multiplexed event
// stream, on which the relay subscribes jobs (docs/multiplexed-stream.md).
func (c *Client) StreamRequest(ctx context.Context) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base.String()+"/v1/events", nil)
	if err != nil {
		return nil, fmt.Errorf("backend stream request: %w", err)
	}
	req.Header.Set("Accept", "text/event-stream")
	c.setHeaders(req.Header, "")
	return req, nil
}

// SubscriptionRequest subscribes (PUT) owner's job code on the stream,
// from after, or unsubscribes it (DELETE).
func (c *Client) SubscriptionRequest(ctx context.Context, method, stream, owner, code string, after int64) (*http.Request, error) {
	path := "/v1/events/" + url.PathEscape(stream) + "/subscriptions/" + url.PathEscape(code)
	req, err := http.NewRequestWithContext(ctx, method, c.base.String()+path, nil)
	if err != nil {
		return nil, fmt.Errorf("backend subscription request: %w", err)
	}
	c.setHeaders(req.Header, owner)
	if after > 0 {
		req.Header.Set("Last-Event-ID", strconv.FormatInt(after, 10))
	}
	return req, nil
}

// HTTPClient is the client every backend request goes through.
func (c *Client) HTTPClient() *http.Client { return c.http }

func (c *Client) setHeaders(h http.Header, owner string) {
	h.Set("X-Forwarded-Prefix", ForwardedPrefix)
	if owner != "" {
		h.Set("X-Export-Owner", owner)
	}
	if c.token != "" {
		h.Set("Authorization", "Bearer "+c.token)
	}
}
