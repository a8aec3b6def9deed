// gen: the database. The host of the Go vulnerability database
// (vuln.go.dev) cannot be reached from every machine this project runs on;
// the Go module proxy can, and it serves the database's source, the module
// golang.org/x/vulndb, whose data/osv holds every entry in OSV form.
//
//	vulndb gen -version v0.0.0-20261105234957-e22db6528018 -out DIR
//
// downloads the module at that version (go mod download) and writes DIR in
// the v1 layout of https://go.dev/security/vuln/database#api, as
// golang.org/x/vuln/internal/client reads it from a file:// URL:
//
//	DIR/index/db.json       {"modified": T}: the latest entry's modified time
//	DIR/index/modules.json  [{"path", "vulns": [{"id", "modified", "fixed"}]}],
//	                        sorted by path, then id; "fixed" is the version
//	                        from which no later version is affected
//	DIR/index/vulns.json    [{"id", "modified", "aliases"}], sorted by id
//	DIR/ID/<id>.json        the OSV entry
//
// The entries in data/osv carry no modified time (vuln.go.dev takes it from
// the git history, which a module zip does not have): each gets the time of
// the snapshot, the date in the pseudo-version, so the database reports
// itself as of that day. DIR is written beside itself and renamed into place,
// so a half-written database is never read.

package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/mod/module"
	"golang.org/x/mod/semver"
)

const vulndbModule = "golang.org/x/vulndb"

func gen(args []string) error {
	fs := flag.NewFlagSet("gen", flag.ExitOnError)
	version := fs.String("version", "", "version of "+vulndbModule+" to build from (a pseudo-version: its date becomes the database's)")
	out := fs.String("out", "", "directory to write the database to (replaced if it exists)")
	_ = fs.Parse(args)
	if *version == "" || *out == "" || fs.NArg() > 0 {
		fs.Usage()
		os.Exit(2)
	}
	return genFrom(*version, *out)
}

func genFrom(version, out string) error {
	snapshot, err := module.PseudoVersionTime(version)
	if err != nil {
		return fmt.Errorf("-version: %w", err)
	}
	src, err := downloadModule(vulndbModule, version)
	if err != nil {
		return err
	}
	n, err := generate(filepath.Join(src, "data", "osv"), out, snapshot)
	if err != nil {
		return err
	}
	fmt.Printf("vulndb: %d entries from %s@%s (as of %s) in %s\n",
		n, vulndbModule, version, snapshot.Format(time.DateOnly), out)
	return nil
}

// downloadModule fetches path@version into the module cache through the go
// command (and so through GOPROXY) and returns its directory.
func downloadModule(path, version string) (string, error) {
	var stderr bytes.Buffer
	cmd := exec.Command("go", "mod", "download", "-json", path+"@"+version)
	cmd.Stderr = &stderr
	// Outside any module and workspace: only the one module is fetched.
	cmd.Env = append(os.Environ(), "GOWORK=off")
	cmd.Dir = os.TempDir()
	b, err := cmd.Output()
	var info struct{ Dir, Error string }
	if jerr := json.Unmarshal(b, &info); jerr == nil && info.Error != "" {
		return "", fmt.Errorf("go mod download %s@%s: %s", path, version, info.Error)
	}
	if err != nil {
		return "", fmt.Errorf("go mod download %s@%s: %w: %s", path, version, err, stderr.Bytes())
	}
	if info.Dir == "" {
		return "", fmt.Errorf("go mod download %s@%s: no directory in %q", path, version, b)
	}
	return info.Dir, nil
}

// entry is the part of an OSV entry the indexes need; the entry itself is
// copied field for field (as raw JSON), with "modified" set.
type entry struct {
	ID        string    `json:"id"`
	Published time.Time `json:"published"`
	Aliases   []string  `json:"aliases"`
	Affected  []struct {
		Package struct {
			Name string `json:"name"`
		} `json:"package"`
		Ranges []osvRange `json:"ranges"`
	} `json:"affected"`
}

type osvRange struct {
	Type   string     `json:"type"`
	Events []osvEvent `json:"events"`
}

type osvEvent struct {
	Introduced string `json:"introduced"`
	Fixed      string `json:"fixed"`
}

type moduleVuln struct {
	ID       string    `json:"id"`
	Modified time.Time `json:"modified"`
	Fixed    string    `json:"fixed,omitempty"`
}

type moduleMeta struct {
	Path  string       `json:"path"`
	Vulns []moduleVuln `json:"vulns"`
}

type vuln struct {
	ID       string    `json:"id"`
	Modified time.Time `json:"modified"`
	Aliases  []string  `json:"aliases,omitempty"`
}

// generate writes the database for the OSV files in osvDir to out, every
// entry modified at the given time, and returns how many entries it holds.
func generate(osvDir, out string, modified time.Time) (int, error) {
	files, err := filepath.Glob(filepath.Join(osvDir, "*.json"))
	if err != nil {
		return 0, err
	}
	if len(files) == 0 {
		return 0, fmt.Errorf("no OSV entries in %s", osvDir)
	}
	tmp, err := tempDatabase(out)
	if err != nil {
		return 0, err
	}
	defer func() { _ = os.RemoveAll(tmp) }() // on failure; after the rename there is nothing left
	db := &database{dir: tmp, modified: modified.UTC(), modules: map[string]*moduleMeta{}}
	for _, f := range files {
		if err := db.add(f); err != nil {
			return 0, err
		}
	}
	if err := db.writeIndex(); err != nil {
		return 0, err
	}
	if err := os.RemoveAll(out); err != nil {
		return 0, err
	}
	if err := os.Rename(tmp, out); err != nil {
		return 0, err
	}
	return len(files), nil
}

// tempDatabase makes an empty database directory (index/ and ID/) beside
// out, to be renamed into place once written.
func tempDatabase(out string) (string, error) {
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(out), filepath.Base(out)+".tmp-")
	if err != nil {
		return "", err
	}
	for _, d := range []string{"index", "ID"} {
		if err := os.Mkdir(filepath.Join(tmp, d), 0o755); err != nil {
			_ = os.RemoveAll(tmp)
			return "", err
		}
	}
	return tmp, nil
}

// database is a database being written to dir: the entries are written as
// they are added, the indexes they make at the end.
type database struct {
	dir      string
	modified time.Time // every entry's
	modules  map[string]*moduleMeta
	vulns    []vuln
}

// add writes the OSV entry in file f, with its modified time, and indexes it.
func (db *database) add(f string) error {
	b, err := os.ReadFile(f)
	if err != nil {
		return err
	}
	var e entry
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &e); err != nil {
		return fmt.Errorf("%s: %w", f, err)
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return fmt.Errorf("%s: %w", f, err)
	}
	if e.ID == "" || filepath.Base(f) != e.ID+".json" {
		return fmt.Errorf("%s: entry id %q does not match the file name", f, e.ID)
	}
	raw["modified"], _ = json.Marshal(db.modified)
	if e.Published.IsZero() {
		raw["published"] = raw["modified"]
	}
	if err := writeJSON(filepath.Join(db.dir, "ID", e.ID+".json"), raw); err != nil {
		return err
	}
	db.vulns = append(db.vulns, vuln{ID: e.ID, Modified: db.modified, Aliases: e.Aliases})
	for _, a := range e.Affected {
		path := a.Package.Name
		if path == "" {
			return fmt.Errorf("%s: an affected package without a name", f)
		}
		if db.modules[path] == nil {
			db.modules[path] = &moduleMeta{Path: path, Vulns: []moduleVuln{}}
		}
		db.modules[path].Vulns = append(db.modules[path].Vulns,
			moduleVuln{ID: e.ID, Modified: db.modified, Fixed: latestFixed(a.Ranges)})
	}
	return nil
}

// writeIndex writes index/db.json, modules.json and vulns.json, sorted.
func (db *database) writeIndex() error {
	index := make([]*moduleMeta, 0, len(db.modules))
	for _, m := range db.modules {
		slices.SortStableFunc(m.Vulns, func(a, b moduleVuln) int { return strings.Compare(a.ID, b.ID) })
		index = append(index, m)
	}
	slices.SortFunc(index, func(a, b *moduleMeta) int { return strings.Compare(a.Path, b.Path) })
	slices.SortFunc(db.vulns, func(a, b vuln) int { return strings.Compare(a.ID, b.ID) })
	for name, v := range map[string]any{
		"db.json":      map[string]time.Time{"modified": db.modified},
		"modules.json": index,
		"vulns.json":   db.vulns,
	} {
		if err := writeJSON(filepath.Join(db.dir, "index", name), v); err != nil {
			return err
		}
	}
	return nil
}

// latestFixed is the version from which no later version is affected, with no
// "v" (the index's "fixed"), or "" if there is none: the highest "fixed" of
// the SEMVER ranges, unless some range re-introduces the vulnerability after
// it. It is golang.org/x/vulndb's osvutils.LatestFixed, which govulncheck
// mirrors (internal/semver.NonSupersededFix) to skip entries fixed before
// the version in use: a value too low here would hide a vulnerability.
func latestFixed(ranges []osvRange) string {
	var latest string
	for _, r := range ranges {
		if r.Type != "SEMVER" {
			continue
		}
		for _, e := range r.Events {
			if e.Fixed != "" && less(latest, e.Fixed) {
				latest = e.Fixed
			}
		}
		for _, e := range r.Events {
			if e.Introduced != "" && e.Introduced != "0" && less(latest, e.Introduced) {
				latest = ""
				break
			}
		}
	}
	return latest
}

// less compares versions written without a "v" (as OSV writes them), with
// one, or with "go"; an invalid version (such as "") sorts first.
func less(a, b string) bool {
	canon := func(v string) string {
		return "v" + strings.TrimPrefix(strings.TrimPrefix(v, "v"), "go")
	}
	return semver.Compare(canon(a), canon(b)) < 0
}

func writeJSON(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}
