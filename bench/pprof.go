package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// With BENCH_BFF_PPROF=127.0.0.1:port and -bin pointing at binaries built
// by bench/profiling/build.sh, the BFF serves net/http/pprof there and the
// harness saves profiles of it into <out>/pprof/: the heap and goroutines
// with every idle stream open, and the CPU during the fan-out.
//
// BENCH_BACKEND_PPROF=127.0.0.1:port does the same for the backend of the
// create scenario (with block and mutex profiling on): a CPU profile of
// the load, then its block, mutex and allocation profiles; and a CPU
// profile of the spread's backend while its jobs generate.
var (
	pprofAddr        = os.Getenv("BENCH_BFF_PPROF")
	backendPprofAddr = os.Getenv("BENCH_BACKEND_PPROF")
	pprofDir         string
)

func bffEnv() []string {
	if pprofAddr == "" {
		return []string{"PPROF_ADDR="}
	}
	return []string{"PPROF_ADDR=" + pprofAddr}
}

// backendEnv serves pprof from the backend only when asked and only for
// the scenario that profiles it (profile true), so no two backends of a
// run want the same port.
func backendEnv(profile bool) []string {
	if !profile || backendPprofAddr == "" {
		return []string{"PPROF_ADDR="}
	}
	return []string{"PPROF_ADDR=" + backendPprofAddr, "PPROF_BLOCK=1"}
}

// grabProfile saves http://pprofAddr/debug/pprof/<path> (the BFF's) as <pprofDir>/<name>.
func grabProfile(name, path string, timeout time.Duration) {
	grabProfileFrom(pprofAddr, name, path, timeout)
}

// grabProfileFrom saves http://addr/debug/pprof/<path> as <pprofDir>/<name>;
// nothing when addr is empty.
func grabProfileFrom(addr, name, path string, timeout time.Duration) {
	if addr == "" {
		return
	}
	c := &http.Client{Timeout: timeout}
	resp, err := c.Get("http://" + addr + "/debug/pprof/" + path)
	if err != nil {
		logf("  pprof %s: %v", name, err)
		return
	}
	defer func() { _ = resp.Body.Close() }()
	if err := os.MkdirAll(pprofDir, 0o755); err != nil {
		return
	}
	f, err := os.Create(filepath.Join(pprofDir, name))
	if err != nil {
		return
	}
	defer func() { _ = f.Close() }()
	n, _ := io.Copy(f, resp.Body)
	logf("  saved %s (%s, %d bytes)", f.Name(), fmt.Sprint(resp.StatusCode), n)
}
