package config

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/exportstream/exportstream/internal/usagedoc"
)

func TestConfigurationDocIsTheHelpOutput(t *testing.T) {
	help := usagedoc.Help(t, func(args []string, w io.Writer) error { _, err := Parse(args, w); return err })
	usagedoc.Check(t, "../../../docs/configuration.md", "## bff", help)
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
	if _, err := Parse([]string{"-address-create-burst", "0"}, &bytes.Buffer{}); err == nil {
		t.Error("a zero -address-create-burst under a rate was accepted: no create would pass")
	}
}

func TestTrustedProxiesAreCIDRsOrAddresses(t *testing.T) {
	t.Setenv("TRUSTED_PROXIES", " 172.16.0.0/12, 10.0.0.7 ,, ::ffff:192.168.0.0/112,2001:db8::1")
	c, err := Parse(nil, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := fmt.Sprint(c.TrustedProxies), "[172.16.0.0/12 10.0.0.7/32 192.168.0.0/16 2001:db8::1/128]"; got != want {
		t.Errorf("TRUSTED_PROXIES read as %s, want %s", got, want)
	}
	for _, bad := range []string{"nginx", "10.0.0.0/33", "10.0.0.1:80"} {
		if _, err := Parse([]string{"-trusted-proxies", bad}, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), bad) {
			t.Errorf("-trusted-proxies %q: err %v, want one naming it", bad, err)
		}
	}
}
