package config

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/exportstream/exportstream/internal/usagedoc"
)

// help is -help's output with none of the settings' variables set, so that
// it shows the defaults.
func help(t *testing.T) string {
	t.Helper()
	var out bytes.Buffer
	if _, err := Parse([]string{"-help"}, &out); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-help: %v, want flag.ErrHelp", err)
	}
	keys := usagedoc.Keys(out.String())
	if len(keys) < 10 {
		t.Fatalf("-help names %d environment variables: %q", len(keys), out.String())
	}
	for _, k := range keys {
		t.Setenv(k, "") // restored after the test
		_ = os.Unsetenv(k)
	}
	out.Reset()
	_, _ = Parse([]string{"-help"}, &out)
	return out.String()
}

func TestConfigurationDocIsTheHelpOutput(t *testing.T) {
	usagedoc.Check(t, "../../../docs/configuration.md", "## bff", help(t))
}

func TestEnvironmentIsTheDefaultAndFlagsWin(t *testing.T) {
	t.Setenv("UPSTREAM_GIVEUP", "2m")
	t.Setenv("BFF_ADDR", "127.0.0.1:9")
	t.Setenv("ALLOWED_ORIGINS", " https://a.example/, ,https://b.example")
	c, err := Parse([]string{"-addr", "127.0.0.1:7"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if c.GiveUp != 2*time.Minute || c.Addr != "127.0.0.1:7" || strings.Join(c.Origins(), " ") != "https://a.example https://b.example" {
		t.Errorf("got give-up %v, addr %q, origins %q; want 2m from UPSTREAM_GIVEUP, the flag's addr, two origins", c.GiveUp, c.Addr, c.Origins())
	}
}

func TestMalformedEnvironmentAndValuesAreErrors(t *testing.T) {
	t.Setenv("CREATE_RATE", "fast")
	t.Setenv("COOKIE_SECURE", "si")
	_, err := Parse(nil, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), `CREATE_RATE="fast": not a number`) || !strings.Contains(err.Error(), `COOKIE_SECURE="si": not a boolean`) {
		t.Errorf("got %v; want both variables named", err)
	}
	t.Setenv("CREATE_RATE", "")
	t.Setenv("COOKIE_SECURE", "")
	if _, err := Parse([]string{"-retry", "0s"}, &bytes.Buffer{}); err == nil {
		t.Error("a zero -retry was accepted")
	}
}
