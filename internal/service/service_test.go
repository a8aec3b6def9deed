package service

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

func TestEveryTicksEachIntervalUntilItsContextEnds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		start := time.Now()
		var ticks []time.Duration
		done := make(chan struct{})
		go func() {
			defer close(done)
			Every(ctx, time.Minute, func(now time.Time) {
				ticks = append(ticks, now.Sub(start))
				if len(ticks) == 3 {
					cancel()
				}
			})
		}()
		<-done
		if len(ticks) != 3 || ticks[0] != time.Minute || ticks[2] != 3*time.Minute {
			t.Errorf("ticks at %v; want 1m, 2m, 3m and then no more", ticks)
		}
	})
}

func TestHealthcheckIsTheServersHealthz(t *testing.T) {
	status := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(status)
	}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	if err := Healthcheck(t.Context(), ":"+port); err != nil {
		t.Errorf("healthy server on :%s: %v", port, err)
	}
	status = http.StatusServiceUnavailable
	if err := Healthcheck(t.Context(), ":"+port); err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("unhealthy server: %v, want an error naming 503", err)
	}
}

func TestServeShutsDownWhenItsContextEnds(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	served := make(chan error, 1)
	srv := &http.Server{Handler: http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}), ReadHeaderTimeout: time.Second}
	go func() { served <- Serve(ctx, srv, ln, time.Second) }()
	resp, err := http.Get("http://" + ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	cancel()
	if err := <-served; err != nil {
		t.Errorf("Serve after its context ended: %v, want nil", err)
	}
	if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		t.Error("the listener still accepts after Serve returned")
	}
}
