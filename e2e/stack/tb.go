package stack

import (
	"os"
	"strings"
	"testing"
)

// SessionSecret is the BFF's session secret in every stack: BFFs started
// with it know each other's sessions.
var SessionSecret = strings.Repeat("s", 32)

// Run starts c for tb and kills it (SIGKILL) when tb ends; a server that
// does not start fails tb. Its stderr goes to the test's unless c says.
func Run(tb testing.TB, c Cmd) *Proc {
	tb.Helper()
	if c.Stderr == nil {
		c.Stderr = os.Stderr
	}
	p, err := Start(tb.Context(), c)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(p.Kill)
	return p
}

// MustRestart is Restart for tb: it fails tb if p does not start again, and
// kills the new process when tb ends.
func (p *Proc) MustRestart(tb testing.TB) *Proc {
	tb.Helper()
	q, err := p.Restart(tb.Context())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(q.Kill)
	return q
}

// BackendCmd runs the backend on a new address with args.
func BackendCmd(tb testing.TB, args ...string) Cmd {
	tb.Helper()
	// Scenarios on: tests script exports (failAt, …); args may turn it off.
	return Cmd{Name: "backend", Path: Bin(tb, "backend"), Args: append([]string{"-addr", "{addr}", "-scenarios", "on"}, args...)}
}

// Backend runs the backend for tb with args (see Run).
func Backend(tb testing.TB, args ...string) *Proc {
	tb.Helper()
	return Run(tb, BackendCmd(tb, args...))
}

// BFFCmd runs the BFF on a new address in front of backendURL, with the
// stack's session secret and args. The limits per client address are off
// (args may set them): every browser of a system test comes from the same
// loopback address, where they would count as one client.
func BFFCmd(tb testing.TB, backendURL string, args ...string) Cmd {
	tb.Helper()
	base := []string{"-addr", "{addr}", "-backend-url", backendURL, "-session-secret", SessionSecret,
		"-address-session-rate", "0", "-address-create-rate", "0", "-max-streams-per-address", "0"}
	return Cmd{Name: "bff", Path: Bin(tb, "bff"), Args: append(base, args...)}
}

// BFF runs the BFF for tb in front of backendURL (see BFFCmd and Run).
func BFF(tb testing.TB, backendURL string, args ...string) *Proc {
	tb.Helper()
	return Run(tb, BFFCmd(tb, backendURL, args...))
}
