package service

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// parseSecret parses args with one secret flag, -token ($TOKEN).
func parseSecret(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var out bytes.Buffer
	var token string
	f := NewFlags("test", &out)
	f.Secret(&token, "token", "TOKEN", "a secret")
	err := f.Parse(args)
	return token, out.String(), err
}

func TestASecretComesFromItsVariableOrItsFileAndAFlagWins(t *testing.T) {
	t.Setenv("TOKEN", "from-env")
	if got, _, err := parseSecret(t); err != nil || got != "from-env" {
		t.Errorf("from $TOKEN: %q, %v", got, err)
	}
	if got, _, err := parseSecret(t, "-token", "from-flag"); err != nil || got != "from-flag" {
		t.Errorf("-token over $TOKEN: %q, %v", got, err)
	}
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte("  from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TOKEN_FILE", file)
	if _, _, err := parseSecret(t); err == nil || !strings.Contains(err.Error(), "both set") {
		t.Errorf("$TOKEN and $TOKEN_FILE: %v, want an error saying both are set", err)
	}
	t.Setenv("TOKEN", "")
	if got, _, err := parseSecret(t); err != nil || got != "from-file" {
		t.Errorf("from $TOKEN_FILE: %q, %v; want the file's content, trimmed", got, err)
	}
	if err := os.WriteFile(file, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := parseSecret(t); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("an empty $TOKEN_FILE: %v, want an error", err)
	}
}

func TestHelpDoesNotShowASecret(t *testing.T) {
	t.Setenv("TOKEN", "do-not-print-me")
	if _, help, _ := parseSecret(t, "-help"); strings.Contains(help, "do-not-print-me") || !strings.Contains(help, "TOKEN_FILE") {
		t.Errorf("-help printed %q; want the variables named and the value not shown", help)
	}
}

func TestAPublishedSampleSecretIsRefusedWhereverItComesFrom(t *testing.T) {
	sample := published[1]
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte(sample+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, set := range map[string]func(t *testing.T) []string{
		"flag":          func(*testing.T) []string { return []string{"-token", sample} },
		"variable":      func(t *testing.T) []string { t.Setenv("TOKEN", sample); return nil },
		"file":          func(t *testing.T) []string { t.Setenv("TOKEN_FILE", file); return nil },
		"entry of list": func(*testing.T) []string { return []string{"-token", "a-key-of-our-own-0123456789abcdef, " + sample} },
	} {
		t.Run(name, func(t *testing.T) {
			_, _, err := parseSecret(t, set(t)...)
			if err == nil || !strings.Contains(err.Error(), "sample value published") {
				t.Errorf("%v; want the published sample refused", err)
			}
		})
	}
}

func TestInitSecretsWritesEachOnceAndEveryDeploymentGetsItsOwn(t *testing.T) {
	read := func(dir string) map[string]string {
		got := map[string]string{}
		for _, name := range []string{"a", "b"} {
			b, err := os.ReadFile(filepath.Join(dir, name))
			if err != nil {
				t.Fatal(err)
			}
			got[name] = string(b)
		}
		return got
	}
	one, two := t.TempDir(), t.TempDir()
	for _, dir := range []string{one, two, one} { // one twice: a restart
		if err := InitSecrets(dir, "a", "b"); err != nil {
			t.Fatal(err)
		}
	}
	first := read(one)
	if len(strings.TrimSpace(first["a"])) != 64 || first["a"] == first["b"] {
		t.Errorf("secrets %q; want two different 64-character values", first)
	}
	if err := InitSecrets(one, "a", "b"); err != nil || read(one)["a"] != first["a"] {
		t.Errorf("after another start: %v, %q; want the same secrets kept", err, read(one))
	}
	if read(two)["a"] == first["a"] {
		t.Error("two deployments got the same secret")
	}
	if st, err := os.Stat(filepath.Join(one, "a")); err != nil || st.Mode().Perm() != 0o400 {
		t.Errorf("mode %v (%v); want 0400", st.Mode().Perm(), err)
	}
}
