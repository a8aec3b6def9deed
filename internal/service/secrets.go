package service

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// published are secret values that once stood in this repository's files:
// anyone can read them, so no service runs with them.
var published = []string{
	"exportstream-dev-token",
	"exportstream-demo-secret-change-me-0123456789",
}

// Secret defines -name for a secret: $key, or the content of the file
// $key_FILE names (Docker's convention for secrets in files), never both.
// Unlike other flags its default is not shown by -help, and a value that
// was ever published is refused.
func (f *Flags) Secret(p *string, name, key, usage string) {
	env, err := secretFromEnv(key)
	if err != nil {
		f.errs = append(f.errs, err)
	}
	f.set.StringVar(p, name, "", usage+" ("+key+", or a file named by "+key+"_FILE)")
	f.secrets = append(f.secrets, secretFlag{p, name, key, env})
}

type secretFlag struct {
	p         *string
	name, key string
	env       string // the value from the environment, unless the flag is given
}

func secretFromEnv(key string) (string, error) {
	v, path := os.Getenv(key), os.Getenv(key+"_FILE")
	switch {
	case path == "":
		return v, nil
	case v != "":
		return "", fmt.Errorf("%s and %s_FILE are both set: set one", key, key)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("%s_FILE: %w", key, err)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("%s_FILE: %s is empty", key, path)
	}
	return s, nil
}

// checkSecrets refuses published values in any secret flag, whether it
// came from a flag, the environment or a file; a list (comma-separated)
// is checked entry by entry.
func (f *Flags) checkSecrets() error {
	given := map[string]bool{}
	f.set.Visit(func(fl *flag.Flag) { given[fl.Name] = true })
	var errs []error
	for _, s := range f.secrets {
		if !given[s.name] {
			*s.p = s.env
		}
		for entry := range strings.SplitSeq(*s.p, ",") {
			for _, p := range published {
				if strings.TrimSpace(entry) == p {
					errs = append(errs, fmt.Errorf("-%s (%s) is a sample value published with exportstream: generate your own (docs/deployment.md, Secrets)", s.name, s.key))
				}
			}
		}
	}
	return errors.Join(errs...)
}

// InitSecrets writes each named secret into dir as a file of 48 random
// bytes (base64url), unless the file is already there: the first start of
// a deployment makes its own secrets, and later starts keep them.
func InitSecrets(dir string, names ...string) error {
	for _, name := range names {
		path := filepath.Join(dir, name)
		b := make([]byte, 48)
		_, _ = rand.Read(b) // crypto/rand.Read never fails (Go ≥ 1.24)
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o400)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("init secrets: %w", err)
		}
		_, werr := f.WriteString(base64.RawURLEncoding.EncodeToString(b) + "\n")
		if err := errors.Join(werr, f.Sync(), f.Close()); err != nil {
			_ = os.Remove(path)
			return fmt.Errorf("init secrets: %s: %w", name, err)
		}
	}
	return nil
}
