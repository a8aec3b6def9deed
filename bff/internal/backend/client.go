// Package backend is the BFF's client of the export backend: plain request
// forwarding for the REST routes and opening a job's event stream.
package backend

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// ForwardedPrefix is where browsers see the export routes on the BFF. The
// backend builds file URLs from it, so events are relayed unchanged.
const ForwardedPrefix = "/api"

// Errors of OpenEvents that are answers, not faults: retrying cannot help.
var (
	ErrNotFound     = errors.New("backend: export not found")
	ErrNoContent    = errors.New("backend: nothing newer than Last-Event-ID")
	ErrUnauthorized = errors.New("backend: the service token was rejected")
)

// Client talks to one backend.
type Client struct {
	base  *url.URL
	http  *http.Client
	token string
}

// New returns a client of the backend at baseURL that authenticates with
// serviceToken when it is set.
func New(baseURL, serviceToken string) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("backend url %q must be an absolute http(s) URL", baseURL)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	t := &http.Transport{
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: 15 * time.Second,
	}
	// No client Timeout: it would cut event streams and large downloads;
	// every request carries its caller's context instead.
	return &Client{base: u, http: &http.Client{Transport: t}, token: serviceToken}, nil
}

// Do sends a request to path on the backend with X-Forwarded-Prefix set.
func (c *Client) Do(ctx context.Context, method, path string, body io.Reader, header http.Header) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base.String()+path, body)
	if err != nil {
		return nil, fmt.Errorf("backend request: %w", err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("X-Forwarded-Prefix", ForwardedPrefix)
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("backend %s %s: %w", method, path, err)
	}
	return resp, nil
}

// OpenEvents opens the event stream of code, resuming after lastEventID if
// it is set. The caller reads and closes the returned body.
func (c *Client) OpenEvents(ctx context.Context, code, lastEventID string) (io.ReadCloser, error) {
	h := http.Header{"Accept": {"text/event-stream"}}
	if lastEventID != "" {
		h.Set("Last-Event-ID", lastEventID)
	}
	resp, err := c.Do(ctx, http.MethodGet, "/v1/exports/"+url.PathEscape(code)+"/events", nil, h)
	if err != nil {
		return nil, err
	}
	switch {
	case resp.StatusCode == http.StatusOK && strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream"):
		return resp.Body, nil
	case resp.StatusCode == http.StatusNotFound:
		err = ErrNotFound
	case resp.StatusCode == http.StatusNoContent:
		err = ErrNoContent
	case resp.StatusCode == http.StatusUnauthorized:
		err = ErrUnauthorized
	default:
		err = fmt.Errorf("backend events of %s: status %d, content type %q", code, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	_ = resp.Body.Close()
	return nil, err
}
