package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// scenarioFloor measures what one delivery costs the kernel alone: a
// write(2) of one event-sized message to a loopback TCP socket, in a loop
// over many sockets. First their peers do not read (their buffers hold
// every message, so no reader is ever woken): no relay can deliver an
// event for less CPU than this, one write per delivery. Then a goroutine
// reads each peer, waiting in the netpoller as a browser's connection
// would: the writing thread's CPU then also holds the kernel's work of
// waking a waiting reader, which a relay's writes pay too.
func scenarioFloor(ctx context.Context, e *env) (*Scenario, error) {
	const size = 300 // bytes: a progress snapshot with its id and framing
	sockets, rounds := e.size.floor.sockets, e.size.floor.rounds
	s := &Scenario{
		Name: "floor: the kernel's cost of one delivery",
		Setup: fmt.Sprintf("%d loopback TCP connections in one process; %d rounds of one %d-byte write(2) to each (non-blocking, through syscall.RawConn) "+
			"from one OS thread; CPU = that thread's CLOCK_THREAD_CPUTIME_ID over the loop. Peers not reading, then each peer read by a goroutine of its own.",
			sockets, rounds, size),
		Columns: []string{"writes", "CPU µs/write", "wall µs/write", "readers' CPU µs/write"},
	}
	for _, reading := range []bool{false, true} {
		name := "write(2), 300 B, loopback TCP, peers not reading"
		if reading {
			name = "same, each peer read by a waiting goroutine"
		}
		m, err := floorWrites(ctx, sockets, rounds, size, reading)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		s.Rows = append(s.Rows, &Row{Target: name, Metrics: m})
		logf("  %s: %.2f µs CPU per write", name, m["CPU µs/write"])
	}
	return s, nil
}

func floorWrites(ctx context.Context, sockets, rounds, size int, reading bool) (map[string]float64, error) {
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	defer func() { _ = ln.Close() }()
	var conns []net.Conn
	var readers sync.WaitGroup
	var readBytes atomic.Int64
	total, allRead := int64(sockets*rounds*size), make(chan struct{})
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
		readers.Wait()
	}()
	var raws []syscall.RawConn
	for range sockets {
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", ln.Addr().String())
		if err != nil {
			return nil, err
		}
		srv, err := ln.Accept()
		if err != nil {
			_ = c.Close()
			return nil, err
		}
		conns = append(conns, c, srv)
		rc, err := srv.(*net.TCPConn).SyscallConn()
		if err != nil {
			return nil, err
		}
		raws = append(raws, rc)
		if reading {
			readers.Add(1)
			go func() {
				defer readers.Done()
				buf := make([]byte, 4096)
				for { // until the deferred close
					k, err := c.Read(buf)
					if k > 0 && readBytes.Add(int64(k)) == total {
						close(allRead)
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}
	msg := make([]byte, size)
	var werr error
	// One locked thread, so its CPU clock counts the writes and nothing else.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cpu0, all0, t0 := cpuThread(), selfCPU(), time.Now()
	for range rounds {
		for _, rc := range raws {
			err := rc.Write(func(fd uintptr) bool {
				_, werr = syscall.Write(int(fd), msg)
				return true
			})
			if err != nil || werr != nil {
				return nil, fmt.Errorf("write: %w %w", err, werr)
			}
		}
	}
	cpu, wall := cpuThread()-cpu0, time.Since(t0)
	n := float64(sockets * rounds)
	m := map[string]float64{
		"writes":                n,
		"CPU µs/write":          float64(cpu.Nanoseconds()) / 1e3 / n,
		"wall µs/write":         float64(wall.Nanoseconds()) / 1e3 / n,
		"readers' CPU µs/write": math.NaN(),
	}
	if reading {
		// Wait until the readers have everything, then charge them the
		// rest of the process's CPU (getrusage: tick-coarse, fine at this size).
		select {
		case <-allRead:
		case <-time.After(30 * time.Second):
			return nil, errors.New("the readers did not get every byte within 30 s")
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		m["readers' CPU µs/write"] = float64((selfCPU() - all0 - cpu).Nanoseconds()) / 1e3 / n
	}
	return m, nil
}

// cpuThread is the calling thread's CPU time, to the nanosecond.
func cpuThread() time.Duration {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts)
	return time.Duration(ts.Nano())
}
