// Package usagedoc keeps a command's -help output and its documentation the
// same: docs/configuration.md holds each command's usage in a fenced block
// under a heading, and the commands' tests compare the two.
package usagedoc

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"testing"
)

// Check fails tb unless the fenced block under heading in the markdown file
// at path is usage. With UPDATE_DOCS=1 in the environment it rewrites the
// block instead (`make docs`).
func Check(tb testing.TB, path, heading, usage string) {
	tb.Helper()
	doc, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	start, end, err := block(doc, heading)
	if err != nil {
		tb.Fatalf("%s: %v", path, err)
	}
	if string(doc[start:end]) == usage {
		return
	}
	if os.Getenv("UPDATE_DOCS") == "1" {
		updated := append(append(append([]byte{}, doc[:start]...), usage...), doc[end:]...)
		if err := os.WriteFile(path, updated, 0o644); err != nil {
			tb.Fatal(err)
		}
		return
	}
	tb.Errorf("%s, %q: the usage block is not what -help prints; run `make docs`.\n-help prints:\n%s", path, heading, usage)
}

// block is where the body of the first fenced block after the line heading
// starts and ends in doc.
func block(doc []byte, heading string) (start, end int, err error) {
	h := bytes.Index(doc, []byte("\n"+heading+"\n"))
	if h < 0 {
		return 0, 0, fmt.Errorf("no line %q", heading)
	}
	open := regexp.MustCompile("\n```[a-z]*\n").FindIndex(doc[h+1:])
	if open == nil {
		return 0, 0, fmt.Errorf("no fenced block after %q", heading)
	}
	start = h + 1 + open[1]
	closing := bytes.Index(doc[start:], []byte("```\n"))
	if closing < 0 {
		return 0, 0, fmt.Errorf("the block after %q does not end", heading)
	}
	return start, start + closing, nil
}

// Keys are the environment variables a usage text names, as "(KEY)" or
// "(KEY, …".
func Keys(usage string) []string {
	var keys []string
	for _, m := range regexp.MustCompile(`\(([A-Z][A-Z0-9_]+)[,)]`).FindAllStringSubmatch(usage, -1) {
		keys = append(keys, m[1])
	}
	return keys
}

// Help is what parse prints for -help with none of the environment
// variables the usage names set, so that it shows the defaults; t's
// cleanup puts them back.
func Help(t *testing.T, parse func(args []string, w io.Writer) error) string {
	t.Helper()
	var out bytes.Buffer
	if err := parse([]string{"-help"}, &out); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-help: %v, want flag.ErrHelp", err)
	}
	keys := Keys(out.String())
	if len(keys) < 10 {
		t.Fatalf("-help names %d environment variables: %q", len(keys), out.String())
	}
	for _, k := range keys {
		t.Setenv(k, "") // restored after the test
		_ = os.Unsetenv(k)
	}
	out.Reset()
	_ = parse([]string{"-help"}, &out)
	return out.String()
}
