package stack

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"testing"
	"time"
)

// ReadMetric reads one series of url's /metrics with client, named as the
// exposition format writes it (labels included); ok is false when it is
// absent.
func ReadMetric(ctx context.Context, client *http.Client, url, series string) (v float64, ok bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/metrics", nil)
	if err != nil {
		return 0, false, fmt.Errorf("metrics: %w", err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, false, fmt.Errorf("metrics: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, false, fmt.Errorf("metrics: %w", err)
	}
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindSubmatch(body)
	if m == nil {
		return 0, false, nil
	}
	v, err = strconv.ParseFloat(string(m[1]), 64)
	return v, err == nil, err
}

// Metric is a series of url's /metrics; absent, it fails tb.
func Metric(tb testing.TB, url, series string) float64 {
	tb.Helper()
	v, ok, err := ReadMetric(tb.Context(), http.DefaultClient, url, series)
	if err != nil || !ok {
		tb.Fatalf("%s on %s: %v, present %v", series, url, err, ok)
	}
	return v
}

// MetricOr0 is a series of url's /metrics, 0 when absent (a labelled
// series no event has written yet).
func MetricOr0(tb testing.TB, url, series string) float64 {
	tb.Helper()
	v, _, err := ReadMetric(tb.Context(), http.DefaultClient, url, series)
	if err != nil {
		tb.Fatal(err)
	}
	return v
}

// CheckMetric fails tb unless url's series is want (absent reads 0).
func CheckMetric(tb testing.TB, url, series string, want float64) {
	tb.Helper()
	if got := MetricOr0(tb, url, series); got != want {
		tb.Errorf("%s on %s: %v, want %v", series, url, got, want)
	}
}

// MetricReaches waits up to 10 s for url's series to read want.
func MetricReaches(tb testing.TB, url, series string, want float64) {
	tb.Helper()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	deadline := time.Now().Add(10 * time.Second)
	for v := Metric(tb, url, series); v != want; v = Metric(tb, url, series) {
		if time.Now().After(deadline) {
			tb.Fatalf("%s = %v after 10 s, want %v", series, v, want)
		}
		<-tick.C
	}
}
