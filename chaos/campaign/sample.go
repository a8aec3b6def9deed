package campaign

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

var metricsClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil}, Timeout: 3 * time.Second}

// sample reads a process: its fds and established TCP sockets from /proc
// (first, so the scrape's own connection is not counted), then
// go_goroutines and the active-stream gauges from its /metrics.
func sample(ctx context.Context, p *proc) (ProcSample, error) {
	s := ProcSample{At: time.Now(), Gauges: map[string]float64{}}
	pid := p.pid()
	if pid == 0 {
		return s, fmt.Errorf("%s is not running", p.name)
	}
	fdDir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(fdDir)
	if err != nil {
		return s, fmt.Errorf("read %s: %w", fdDir, err)
	}
	s.FDs = len(ents)
	inodes := map[string]bool{}
	for _, e := range ents {
		if l, err := os.Readlink(fdDir + "/" + e.Name()); err == nil {
			if in, ok := strings.CutPrefix(l, "socket:["); ok {
				inodes[strings.TrimSuffix(in, "]")] = true
			}
		}
	}
	for _, f := range []string{"tcp", "tcp6"} {
		s.Established += established(fmt.Sprintf("/proc/%d/net/%s", pid, f), inodes)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.url()+"/metrics", nil)
	if err != nil {
		return s, fmt.Errorf("metrics request: %w", err)
	}
	resp, err := metricsClient.Do(req)
	if err != nil {
		return s, fmt.Errorf("metrics of %s: %w", p.name, err)
	}
	defer func() { _ = resp.Body.Close() }()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	found := false
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil {
			continue
		}
		if name == "go_goroutines" {
			s.Goroutines, found = int(v), true
		} else if slices.Contains(ActiveGauges, name) {
			s.Gauges[name] = v
		}
	}
	if err := sc.Err(); err != nil {
		return s, fmt.Errorf("metrics of %s: %w", p.name, err)
	}
	if !found {
		return s, fmt.Errorf("metrics of %s: no go_goroutines", p.name)
	}
	return s, nil
}

// established counts the ESTABLISHED sockets (state 01) of path among
// inodes.
func established(path string, inodes map[string]bool) int {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer func() { _ = f.Close() }()
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 9 && fields[3] == "01" && inodes[fields[9]] {
			n++
		}
	}
	return n
}
