package main_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	sse "github.com/tmaxmax/go-sse"
)

var bin = map[string]string{}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "bff-bin-")
	if err != nil {
		panic(err)
	}
	for name, pkg := range map[string]string{"bff": ".", "backend": "../../../backend/cmd/backend"} {
		bin[name] = filepath.Join(dir, name)
		build := exec.Command("go", "build", "-o", bin[name], pkg)
		if name == "backend" {
			build = exec.Command("go", "build", "-o", bin[name], "./cmd/backend")
			build.Dir = "../../../backend"
		}
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "build", name, err)
			os.Exit(1)
		}
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// start runs a binary and returns its listen address once it logs it.
func start(t *testing.T, name string, args ...string) (*exec.Cmd, string) {
	t.Helper()
	return startEnv(t, nil, name, args...)
}

// startEnv is start with env added to the binary's environment.
func startEnv(t *testing.T, env []string, name string, args ...string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(bin[name], args...)
	cmd.Env = append(os.Environ(), env...)
	return startCmd(t, cmd, name)
}

// startCmd starts cmd and returns its listen address once it logs it.
func startCmd(t *testing.T, cmd *exec.Cmd, name string) (*exec.Cmd, string) {
	t.Helper()
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	lines := bufio.NewScanner(out)
	for lines.Scan() {
		var l struct{ Msg, Addr string }
		if json.Unmarshal(lines.Bytes(), &l) == nil && strings.HasSuffix(l.Msg, "listening") {
			go func() { _, _ = io.Copy(io.Discard, out) }()
			return cmd, "http://" + l.Addr
		}
	}
	t.Fatalf("%s exited before listening", name)
	return nil, ""
}

func TestSIGTERMEndsBrowserStreamsCleanlyAndExitsZero(t *testing.T) {
	_, backend := start(t, "backend", "-addr", "127.0.0.1:0", "-memory")
	bff, url := start(t, "bff", "-addr", "127.0.0.1:0", "-backend-url", backend, "-session-secret", strings.Repeat("s", 32))
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	resp, err := c.Post(url+"/api/exports", "application/json", strings.NewReader(`{"rows":10,"durationMs":60000}`))
	if err != nil {
		t.Fatal(err)
	}
	var j struct{ Code string }
	_ = json.NewDecoder(resp.Body).Decode(&j)
	_ = resp.Body.Close()
	stream, err := c.Get(url + "/api/exports/" + j.Code + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = stream.Body.Close() }()
	events := 0
	for _, err := range sse.Read(stream.Body, nil) {
		if err != nil {
			t.Fatalf("stream: %v", err)
		}
		if events++; events == 1 {
			_ = bff.Process.Signal(syscall.SIGTERM)
		}
	}
	// sse.Read returns without error only at a clean end of the response.
	if err := bff.Wait(); err != nil {
		t.Errorf("bff exited with %v after SIGTERM, want 0", err)
	}
}
