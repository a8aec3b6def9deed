package config

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/exportstream/exportstream/internal/usagedoc"
)

func TestConfigurationDocIsTheHelpOutput(t *testing.T) {
	help := usagedoc.Help(t, func(args []string, w io.Writer) error { _, err := Parse(args, w); return err })
	usagedoc.Check(t, "../../../docs/configuration.md", "## backend", help)
}

func TestEnvironmentIsTheDefaultAndFlagsWin(t *testing.T) {
	t.Setenv("RETENTION", "2m")
	t.Setenv("BACKEND_ADDR", "127.0.0.1:9")
	t.Setenv("DATA_DIR", "") // set and empty: in memory
	c, err := Parse([]string{"-addr", "127.0.0.1:7"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if c.Retention != 2*time.Minute || c.Addr != "127.0.0.1:7" || c.DataDir != "" || c.Workers < 1 {
		t.Errorf("got retention %v, addr %q, data dir %q, workers %d; want 2m from RETENTION, the flag's addr, the empty DATA_DIR, one worker per CPU", c.Retention, c.Addr, c.DataDir, c.Workers)
	}
}

func TestMalformedEnvironmentAndValuesAreErrors(t *testing.T) {
	t.Setenv("WORKERS", "many")
	t.Setenv("RETENTION", "1 hour")
	_, err := Parse(nil, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), `WORKERS="many": not an integer`) || !strings.Contains(err.Error(), `RETENTION="1 hour": not a duration`) {
		t.Errorf("got %v; want both variables named", err)
	}
	t.Setenv("WORKERS", "")
	t.Setenv("RETENTION", "")
	if _, err := Parse([]string{"-disk-reserve", "-1"}, &bytes.Buffer{}); err == nil {
		t.Error("a negative -disk-reserve was accepted")
	}
}

func TestScenariosAreOffUnlessOn(t *testing.T) {
	c, err := Parse(nil, &bytes.Buffer{})
	if err != nil || c.Scenarios {
		t.Fatalf("default: scenarios %v (%v), want off", c.Scenarios, err)
	}
	t.Setenv("SCENARIOS", "on")
	if c, err := Parse(nil, &bytes.Buffer{}); err != nil || !c.Scenarios {
		t.Errorf("SCENARIOS=on: scenarios %v (%v), want on", c.Scenarios, err)
	}
	if _, err := Parse([]string{"-scenarios", "yes"}, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "not on or off") {
		t.Errorf("-scenarios yes: %v, want an error naming on or off", err)
	}
}
