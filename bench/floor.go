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

// floorWrites times rounds of one size-byte write to each of sockets
// loopback connections, their peers read or not.
func floorWrites(ctx context.Context, sockets, rounds, size int, reading bool) (map[string]float64, error) {
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	defer func() { _ = ln.Close() }()
	f := &floorConns{total: int64(sockets * rounds * size), allRead: make(chan struct{})}
	defer f.close()
	for range sockets {
		if err := f.add(ctx, ln, reading); err != nil {
			return nil, err
		}
	}
	msg := make([]byte, size)
	// One locked thread, so its CPU clock counts the writes and nothing else.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cpu0, all0, t0 := cpuThread(), selfCPU(), time.Now()
	if err := f.writeRounds(rounds, msg); err != nil {
		return nil, err
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
		if err := f.waitAllRead(ctx); err != nil {
			return nil, err
		}
		m["readers' CPU µs/write"] = float64((selfCPU() - all0 - cpu).Nanoseconds()) / 1e3 / n
	}
	return m, nil
}

// floorConns are the loopback connection pairs of floorWrites: the
// accepted ends are written through their raw descriptors, the dialled
// ends optionally read by a goroutine each until close.
type floorConns struct {
	conns     []net.Conn
	raws      []syscall.RawConn // of the accepted ends, in order
	readers   sync.WaitGroup
	readBytes atomic.Int64
	total     int64         // bytes the writes send over all connections
	allRead   chan struct{} // closed when the readers have read total
}

// add dials and accepts one more pair; reading starts its reader.
func (f *floorConns) add(ctx context.Context, ln net.Listener, reading bool) error {
	c, err := (&net.Dialer{}).DialContext(ctx, "tcp", ln.Addr().String())
	if err != nil {
		return err
	}
	srv, err := ln.Accept()
	if err != nil {
		_ = c.Close()
		return err
	}
	f.conns = append(f.conns, c, srv)
	rc, err := srv.(*net.TCPConn).SyscallConn()
	if err != nil {
		return err
	}
	f.raws = append(f.raws, rc)
	if reading {
		f.readers.Add(1)
		go f.read(c)
	}
	return nil
}

// read counts what arrives on c until c is closed.
func (f *floorConns) read(c net.Conn) {
	defer f.readers.Done()
	buf := make([]byte, 4096)
	for {
		k, err := c.Read(buf)
		if k > 0 && f.readBytes.Add(int64(k)) == f.total {
			close(f.allRead)
		}
		if err != nil {
			return
		}
	}
}

// writeRounds writes msg once to every connection, rounds times, with
// write(2) on the descriptor: no Go buffering or poller in the way.
func (f *floorConns) writeRounds(rounds int, msg []byte) error {
	var werr error
	for range rounds {
		for _, rc := range f.raws {
			err := rc.Write(func(fd uintptr) bool {
				_, werr = syscall.Write(int(fd), msg)
				return true
			})
			if err != nil || werr != nil {
				return fmt.Errorf("write: %w %w", err, werr)
			}
		}
	}
	return nil
}

func (f *floorConns) waitAllRead(ctx context.Context) error {
	select {
	case <-f.allRead:
		return nil
	case <-time.After(30 * time.Second):
		return errors.New("the readers did not get every byte within 30 s")
	case <-ctx.Done():
		return ctx.Err()
	}
}

// close closes every connection and waits for the readers to end.
func (f *floorConns) close() {
	for _, c := range f.conns {
		_ = c.Close()
	}
	f.readers.Wait()
}

// cpuThread is the calling thread's CPU time, to the nanosecond.
func cpuThread() time.Duration {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts)
	return time.Duration(ts.Nano())
}
