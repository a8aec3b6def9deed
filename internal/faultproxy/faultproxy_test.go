package faultproxy_test

import (
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/exportstream/exportstream/internal/faultproxy"
)

// target starts a loopback server that runs serve on each connection.
func target(t *testing.T, serve func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer func() { _ = c.Close() }()
				serve(c)
			}()
		}
	}()
	return ln.Addr().String()
}

// echo copies what it reads back until the client half-closes.
func echo(c net.Conn) {
	_, _ = io.Copy(c, c)
	_ = c.(*net.TCPConn).CloseWrite()
}

// says answers every connection with s once the client half-closed, so
// that nothing is reset before the client's dial returns.
func says(s string) func(net.Conn) {
	return func(c net.Conn) {
		_, _ = io.Copy(io.Discard, c)
		_, _ = io.WriteString(c, s)
	}
}

func start(t *testing.T, targets ...string) *faultproxy.Proxy {
	t.Helper()
	p, err := faultproxy.New(targets...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

func dial(t *testing.T, p *faultproxy.Proxy) *net.TCPConn {
	t.Helper()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second)) // a failure, not a hang
	return c.(*net.TCPConn)
}

// roundTrip sends msg, half-closes and reads the answer to its end.
func roundTrip(t *testing.T, c *net.TCPConn, msg string) (string, error) {
	t.Helper()
	if _, err := io.WriteString(c, msg); err != nil {
		return "", err
	}
	_ = c.CloseWrite()
	b, err := io.ReadAll(c)
	return string(b), err
}

func TestForwardsBothWaysAndPassesAHalfClose(t *testing.T) {
	p := start(t, target(t, echo))
	if got, err := roundTrip(t, dial(t, p), "ping"); got != "ping" || err != nil {
		t.Fatalf("got %q, %v; want the echo, then EOF", got, err)
	}
}

func TestNewWithoutATargetFails(t *testing.T) {
	if _, err := faultproxy.New(); err == nil {
		t.Fatal("New() without a target: no error")
	}
}

func TestListensOnLoopbackOnly(t *testing.T) {
	p := start(t, target(t, echo))
	if host, _, _ := net.SplitHostPort(p.Addr()); host != "127.0.0.1" {
		t.Fatalf("listens on %s", p.Addr())
	}
}

// deadAddr is a loopback address nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

func TestNewConnectionsGoToTheTargetsInTurnSkippingARefusingOne(t *testing.T) {
	p := start(t, target(t, says("a")), deadAddr(t), target(t, says("b")))
	seen := map[string]int{}
	for range 6 {
		got, err := roundTrip(t, dial(t, p), "")
		if err != nil {
			t.Fatal(err)
		}
		seen[got]++
	}
	// In turn: b (the dead one skipped), b, a; and again.
	if seen["a"] != 2 || seen["b"] != 4 || len(seen) != 2 {
		t.Errorf("6 connections answered %v, want a twice and b four times", seen)
	}
}

func TestResetAfterCutsNewConnectionsOnceThatManyBytesCameBack(t *testing.T) {
	p := start(t, target(t, says("0123456789abcdefghij")))
	p.ResetAfter(10)
	got, err := roundTrip(t, dial(t, p), "")
	if got != "0123456789" || !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("got %q, %v; want the first 10 bytes, then a reset", got, err)
	}
	p.ResetAfter(0)
	if got, err := roundTrip(t, dial(t, p), ""); got != "0123456789abcdefghij" || err != nil {
		t.Fatalf("with ResetAfter(0): got %q, %v", got, err)
	}
}

func TestLatencyDelaysEveryChunkEitherWay(t *testing.T) {
	p := start(t, target(t, echo))
	p.SetLatency(100 * time.Millisecond)
	begin := time.Now()
	if got, err := roundTrip(t, dial(t, p), "ping"); got != "ping" || err != nil {
		t.Fatalf("got %q, %v", got, err)
	}
	if d := time.Since(begin); d < 200*time.Millisecond {
		t.Errorf("a round trip took %v, want at least the latency each way (200ms)", d)
	}
}

func TestRefusedConnectionsAreResetAndNotCounted(t *testing.T) {
	p := start(t, target(t, echo))
	p.Refuse(true)
	// The reset may come before the dial returns or on the first read.
	if c, err := net.Dial("tcp", p.Addr()); err == nil {
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := roundTrip(t, c.(*net.TCPConn), "ping"); err == nil {
			t.Fatal("a refused connection answered")
		}
		_ = c.Close()
	}
	if n := len(p.Accepted()); n != 0 {
		t.Errorf("Accepted has %d values for a refused connection", n)
	}
	p.Refuse(false)
	if got, err := roundTrip(t, dial(t, p), "ping"); got != "ping" || err != nil {
		t.Fatalf("after Refuse(false): got %q, %v", got, err)
	}
	if n := len(p.Accepted()); n != 1 {
		t.Errorf("Accepted has %d values for one connection", n)
	}
}

func TestCutAllResetsOpenConnections(t *testing.T) {
	p := start(t, target(t, echo))
	c := dial(t, p)
	if _, err := io.WriteString(c, "x"); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil { // forwarded: open both ways
		t.Fatal(err)
	}
	p.CutAll()
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("read after CutAll: %v, want a reset", err)
	}
}

// TestABlackholeHoldsOpenAndNewConnectionsUntilLifted: a new connection
// is still taken on (a client that reconnects is seen doing so), and what
// was sent either way arrives once the blackhole is lifted.
func TestABlackholeHoldsOpenAndNewConnectionsUntilLifted(t *testing.T) {
	reached := make(chan struct{}, 2)
	p := start(t, target(t, func(c net.Conn) { reached <- struct{}{}; echo(c) }))
	open := dial(t, p)
	<-p.Accepted()
	if _, err := io.WriteString(open, "x"); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(open, make([]byte, 1)); err != nil { // forwarded: open both ways
		t.Fatal(err)
	}
	<-reached
	p.Blackhole(true)
	if _, err := io.WriteString(open, "held"); err != nil {
		t.Fatal(err)
	}
	_ = open.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if n, err := open.Read(make([]byte, 4)); n != 0 || !errors.Is(err, errTimeout) {
		t.Fatalf("blackholed: read %d bytes, %v; want nothing", n, err)
	}
	_ = open.SetReadDeadline(time.Now().Add(10 * time.Second))
	fresh := dial(t, p)
	<-p.Accepted()
	select {
	case <-reached:
		t.Fatal("a connection made during the blackhole reached the target")
	case <-time.After(100 * time.Millisecond):
	}
	p.Blackhole(false)
	if got, err := roundTrip(t, fresh, "new"); got != "new" || err != nil {
		t.Fatalf("a connection made during the blackhole: got %q, %v", got, err)
	}
	if got, err := roundTrip(t, open, ""); got != "held" || err != nil {
		t.Fatalf("an open connection: got %q, %v", got, err)
	}
}

// errTimeout is what a read past its deadline returns.
var errTimeout = os.ErrDeadlineExceeded

func TestCloseEndsBlackholedConnectionsAndRefusesNewOnes(t *testing.T) {
	p := start(t, target(t, echo))
	p.Blackhole(true)
	c := dial(t, p)
	<-p.Accepted() // held: it waits for the blackhole to lift
	p.Close()      // returns: it does not wait for the blackhole to lift
	if _, err := c.Read(make([]byte, 4)); err == nil {
		t.Fatal("a connection read after Close")
	}
	if c, err := net.Dial("tcp", p.Addr()); err == nil {
		_ = c.Close()
		t.Fatal("the proxy takes connections after Close")
	}
}
