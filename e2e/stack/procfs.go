package stack

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/exportstream/exportstream/internal/testenv"
)

// Sample is one reading of /proc/<pid>.
type Sample struct {
	At      time.Time
	RSSKiB  int64
	CPUTick int64 // utime + stime, in clock ticks (ClockTicks a second)
	FDs     int
	// Waited is how long its threads have been runnable but waiting for a
	// core (schedstat's run delay, summed over the threads alive now).
	Waited time.Duration
}

// ClockTicks is USER_HZ; 100 on every Linux this runs on.
const ClockTicks = 100

// SampleProc reads pid's CPU time, RSS, descriptors and run delay.
func SampleProc(pid int) (Sample, error) {
	s := Sample{At: time.Now()}
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, fmt.Errorf("sample: %w", err)
	}
	// Fields after the parenthesised command name; utime and stime are
	// fields 14 and 15 of the whole line.
	rest := string(st[strings.LastIndexByte(string(st), ')')+2:])
	f := strings.Fields(rest)
	if len(f) < 13 {
		return s, errors.New("sample: short /proc stat")
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	stt, _ := strconv.ParseInt(f[12], 10, 64)
	s.CPUTick = ut + stt
	if s.RSSKiB, err = rssKiB(pid); err != nil {
		return s, err
	}
	s.FDs, _ = FDs(pid)
	s.Waited = runDelay(pid)
	return s, nil
}

// rssKiB is pid's resident set (VmRSS).
func rssKiB(pid int) (int64, error) {
	fh, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("sample: %w", err)
	}
	defer func() { _ = fh.Close() }()
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			return strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
		}
	}
	return 0, nil
}

// runDelay sums the run delay of pid's threads: the time each spent
// runnable, waiting for a core (/proc/<pid>/task/<tid>/schedstat, 2nd field, ns).
func runDelay(pid int) time.Duration {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	var sum int64
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		if f := strings.Fields(string(b)); len(f) >= 2 {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			sum += n
		}
	}
	return time.Duration(sum)
}

// FDs counts pid's open file descriptors.
func FDs(pid int) (int, error) {
	entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return 0, fmt.Errorf("fds: %w", err)
	}
	return len(entries), nil
}

// OpenFDs is FDs for tb: without /proc it skips tb loudly (fails under CI).
func OpenFDs(tb testing.TB, pid int) int {
	tb.Helper()
	n, err := FDs(pid)
	if err != nil {
		testenv.Missing(tb, "/proc, to count a process's file descriptors: %v", err)
	}
	return n
}

// RSS is pid's resident set in bytes, for tb.
func RSS(tb testing.TB, pid int) int64 {
	tb.Helper()
	kib, err := rssKiB(pid)
	if err != nil {
		tb.Fatal(err)
	}
	return kib << 10
}

// Conns counts pid's established TCP connections to port on 127.0.0.1
// (its keep-alive pool to the backend, say), from /proc/<pid>/net/tcp and
// the socket inodes among its fds. A connection pid accepted on one of its
// own listening ports never counts, even when its peer's ephemeral port
// happens to be port.
func Conns(pid, port int) (int, error) {
	table, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/tcp", pid))
	if err != nil {
		return 0, fmt.Errorf("conns: %w", err)
	}
	mine := map[string]bool{} // pid's socket inodes
	entries, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	for _, e := range entries {
		if link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, e.Name())); err == nil {
			if inode, ok := strings.CutPrefix(link, "socket:["); ok {
				mine[strings.TrimSuffix(inode, "]")] = true
			}
		}
	}
	// f[1] local and f[2] remote address:port in hex, f[3] state (01
	// established, 0A listening), f[9] inode.
	var rows [][]string
	listening := map[string]bool{} // pid's listening ports
	for _, line := range strings.Split(string(table), "\n")[1:] {
		if f := strings.Fields(line); len(f) > 9 && mine[f[9]] {
			rows = append(rows, f)
			if f[3] == "0A" {
				listening[f[1][strings.IndexByte(f[1], ':'):]] = true
			}
		}
	}
	n := 0
	for _, f := range rows {
		if f[3] == "01" && f[2] == fmt.Sprintf("0100007F:%04X", port) && !listening[f[1][strings.IndexByte(f[1], ':'):]] {
			n++
		}
	}
	return n, nil
}

// ConnsTo is Conns for tb, to the server p: without /proc it skips tb
// loudly (fails under CI).
func ConnsTo(tb testing.TB, pid int, p *Proc) int {
	tb.Helper()
	port, _ := strconv.Atoi(p.Addr[strings.LastIndexByte(p.Addr, ':')+1:])
	n, err := Conns(pid, port)
	if err != nil {
		testenv.Missing(tb, "/proc, to count a process's connections: %v", err)
	}
	return n
}
