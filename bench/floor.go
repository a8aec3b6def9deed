package main

import (
	"context"
	"fmt"
	"net"
	"syscall"
	"time"
)

// scenarioFloor measures what one delivery costs the kernel alone: a
// write(2) of one event-sized message to a loopback TCP socket, in a loop
// over many sockets whose peers do not read (their buffers hold every
// message, so no reader is ever woken). No relay can deliver an event to a
// browser for less CPU than this, one write per delivery.
func scenarioFloor(ctx context.Context, e *env) (*Scenario, error) {
	const size = 300 // bytes: a progress snapshot with its id and framing
	sockets, rounds := e.size.floor.sockets, e.size.floor.rounds
	s := &Scenario{
		Name: "floor: the kernel's cost of one delivery",
		Setup: fmt.Sprintf("%d loopback TCP connections in one process; %d rounds of one %d-byte write(2) to each (non-blocking, through syscall.RawConn), peers not reading; CPU = getrusage(RUSAGE_SELF) user+system over the loop.",
			sockets, rounds, size),
		Columns: []string{"writes", "CPU µs/write", "wall µs/write"},
	}
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	defer func() { _ = ln.Close() }()
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
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
	}
	msg := make([]byte, size)
	var werr error
	cpu0, t0 := cpuSelf(), time.Now()
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
	n := float64(sockets * rounds)
	cpu, wall := cpuSelf()-cpu0, time.Since(t0)
	s.Rows = append(s.Rows, &Row{Target: "write(2), 300 B, loopback TCP", Metrics: map[string]float64{
		"writes":        n,
		"CPU µs/write":  float64(cpu.Nanoseconds()) / 1e3 / n,
		"wall µs/write": float64(wall.Nanoseconds()) / 1e3 / n,
	}})
	logf("  %.2f µs CPU per write", float64(cpu.Nanoseconds())/1e3/n)
	return s, nil
}

func cpuSelf() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
