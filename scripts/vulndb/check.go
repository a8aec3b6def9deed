// check: govulncheck on each module, against the database gen built.
//
// govulncheck's own exit code (3 on any vulnerable symbol reached) has no way
// to accept a finding, and the standard library's findings cannot be fixed
// in go.mod: they need a newer Go. So check runs govulncheck with
// -format json and decides itself: a finding whose trace reaches a
// vulnerable symbol fails the check unless the accept file lists its ID for
// the module the symbol is in. Findings that only import a vulnerable
// package, or only require a vulnerable module, fail nothing (as with
// govulncheck's default). Accepted findings are printed on every run, and an
// accepted ID no longer found is reported, so the list cannot go stale
// unnoticed.
package main

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
)

func check(args []string) error {
	fs := flag.NewFlagSet("check", flag.ExitOnError)
	bin := fs.String("govulncheck", "govulncheck", "the govulncheck binary")
	db := fs.String("db", "", "the database directory (vulndb gen -out)")
	acceptFile := fs.String("accept", "", "file of accepted findings: `ID MODULE reason` per line")
	_ = fs.Parse(args)
	if *db == "" || fs.NArg() == 0 {
		fs.Usage()
		os.Exit(2)
	}
	var accepted []acceptance
	if *acceptFile != "" {
		var err error
		if accepted, err = readAccepted(*acceptFile); err != nil {
			return err
		}
	}
	results, err := scan(*bin, *db, fs.Args())
	if err != nil {
		return err
	}
	text, failed := report(results, accepted)
	fmt.Print(text)
	if failed > 0 {
		return fmt.Errorf("vulnerabilities in a reachable path, not accepted: %d (fix: bump the module; for stdlib, a newer Go)", failed)
	}
	return nil
}

// acceptance is one line of the accept file: a finding of ID in Module
// (its path, or "stdlib") is reported but does not fail the check.
type acceptance struct {
	ID, Module, Reason string
}

func readAccepted(path string) ([]acceptance, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }() // read only
	var out []acceptance
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) < 3 || !strings.HasPrefix(fields[0], "GO-") {
			return nil, fmt.Errorf("%s:%d: want `GO-YYYY-NNNN module reason`, got %q", path, n, line)
		}
		out = append(out, acceptance{ID: fields[0], Module: fields[1], Reason: strings.Join(fields[2:], " ")})
	}
	return out, sc.Err()
}

// finding is one vulnerability reached in one module directory.
type finding struct {
	ID, Summary     string
	Module, Version string // where the vulnerable symbol is ("stdlib" and "go1.x.y" for the standard library)
	Fixed           string
	Trace           string // one example: the caller in the scanned module → … → the vulnerable symbol
}

type result struct {
	Dir       string
	GoVersion string
	Findings  []finding // sorted by ID, then module
}

// scan runs govulncheck in each directory, two at a time, and returns the
// reachable findings in the order of dirs.
func scan(bin, db string, dirs []string) ([]result, error) {
	db, err := filepath.Abs(db)
	if err != nil {
		return nil, err
	}
	if strings.ContainsRune(bin, filepath.Separator) { // a path, not a name to look up: it must survive cmd.Dir
		if bin, err = filepath.Abs(bin); err != nil {
			return nil, err
		}
	}
	results := make([]result, len(dirs))
	errs := make([]error, len(dirs))
	sem := make(chan struct{}, 2)
	var wg sync.WaitGroup
	for i, dir := range dirs {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			results[i], errs[i] = scanDir(bin, db, dir)
		})
	}
	wg.Wait()
	return results, errors.Join(errs...)
}

func scanDir(bin, db, dir string) (result, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin, "-db", "file://"+db, "-format", "json", "./...")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off") // the module as it is built on its own (Dockerfiles)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return result{}, fmt.Errorf("govulncheck in %s: %w\n%s", dir, err, stderr.Bytes())
	}
	r, err := parse(&stdout)
	if err != nil {
		return result{}, fmt.Errorf("govulncheck in %s: %w", dir, err)
	}
	r.Dir = dir
	return r, nil
}

// The parts of govulncheck's JSON messages (golang.org/x/vuln
// internal/govulncheck, protocol v1.0.0) that check reads.
type message struct {
	Config *struct {
		GoVersion string `json:"go_version"`
	} `json:"config"`
	OSV *struct {
		ID      string `json:"id"`
		Summary string `json:"summary"`
	} `json:"osv"`
	Finding *struct {
		OSV          string  `json:"osv"`
		FixedVersion string  `json:"fixed_version"`
		Trace        []frame `json:"trace"`
	} `json:"finding"`
}

type frame struct {
	Module   string `json:"module"`
	Version  string `json:"version"`
	Package  string `json:"package"`
	Function string `json:"function"`
	Receiver string `json:"receiver"`
	Position *struct {
		Filename string `json:"filename"`
		Line     int    `json:"line"`
	} `json:"position"`
}

// name is pkg.Func or pkg.Recv.Method, with the package's full path, or
// only its last element when short.
func (f frame) name(short bool) string {
	name := f.Function
	if f.Receiver != "" {
		name = strings.TrimPrefix(f.Receiver, "*") + "." + name
	}
	pkg := f.Package
	if short {
		pkg = path.Base(pkg)
	}
	return pkg + "." + name
}

// goVersion writes the standard library's versions as Go does ("go1.26.8"
// where govulncheck has "v1.26.8").
func goVersion(module, v string) string {
	if module == "stdlib" && strings.HasPrefix(v, "v") {
		return "go" + v[1:]
	}
	return v
}

// parse reads govulncheck's JSON stream and keeps, per ID and module (one
// entry can name both the standard library and golang.org/x/net), the first
// finding
// whose trace reaches a function: trace[0] is the vulnerable symbol, the last
// frame the scanned module's caller. Findings at the package or module level
// (no function) are not reachable ones.
func parse(r io.Reader) (result, error) {
	var res result
	summaries := map[string]string{}
	seen := map[string]bool{}
	dec := json.NewDecoder(r)
	for {
		var m message
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return res, err
		}
		switch {
		case m.Config != nil:
			res.GoVersion = m.Config.GoVersion
		case m.OSV != nil:
			summaries[m.OSV.ID] = m.OSV.Summary
		case m.Finding != nil:
			t := m.Finding.Trace
			if len(t) == 0 || t[0].Function == "" || seen[m.Finding.OSV+" "+t[0].Module] {
				continue
			}
			seen[m.Finding.OSV+" "+t[0].Module] = true
			trace := t[0].name(false)
			if last := t[len(t)-1]; len(t) > 1 {
				arrow := " → "
				if len(t) > 2 {
					arrow = " → … → "
				}
				trace = last.name(true) + arrow + trace
				if last.Position != nil {
					trace = fmt.Sprintf("%s:%d: %s", last.Position.Filename, last.Position.Line, trace)
				}
			}
			res.Findings = append(res.Findings, finding{
				ID: m.Finding.OSV, Module: t[0].Module, Version: goVersion(t[0].Module, t[0].Version),
				Fixed: goVersion(t[0].Module, m.Finding.FixedVersion), Trace: trace,
			})
		}
	}
	for i := range res.Findings {
		res.Findings[i].Summary = summaries[res.Findings[i].ID]
	}
	slices.SortFunc(res.Findings, func(a, b finding) int {
		return cmp.Or(strings.Compare(a.ID, b.ID), strings.Compare(a.Module, b.Module))
	})
	return res, nil
}

// report lists each module's reachable findings, marks the accepted ones,
// names the accepted IDs found nowhere, and counts the findings that fail.
func report(results []result, accepted []acceptance) (text string, failed int) {
	w := new(strings.Builder)
	used := map[acceptance]bool{}
	for _, r := range results {
		fmt.Fprintf(w, "govulncheck %s (%s): vulnerabilities in a reachable path: %d\n", r.Dir, r.GoVersion, len(r.Findings))
		for _, f := range r.Findings {
			fixed := f.Fixed
			if fixed == "" {
				fixed = "no fixed version"
			}
			if a, ok := acceptedFor(accepted, f); ok {
				used[a] = true
				fmt.Fprintf(w, "  %s %s@%s accepted: %s\n", f.ID, f.Module, f.Version, a.Reason)
				continue
			}
			failed++
			fmt.Fprintf(w, "  %s %s@%s FAIL (fixed in %s): %s\n      %s\n", f.ID, f.Module, f.Version, fixed, f.Summary, f.Trace)
		}
	}
	for _, a := range accepted {
		if !used[a] {
			fmt.Fprintf(w, "accepted but no longer found (remove it from the accept file): %s %s\n", a.ID, a.Module)
		}
	}
	return w.String(), failed
}

func acceptedFor(accepted []acceptance, f finding) (acceptance, bool) {
	for _, a := range accepted {
		if a.ID == f.ID && a.Module == f.Module {
			return a, true
		}
	}
	return acceptance{}, false
}
