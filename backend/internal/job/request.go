package job

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"regexp"
	"strings"
	"time"
	"unicode"
)

// Limits of a request. They keep one export from taking the machine.
const (
	MaxRows        = 10_000_000
	MaxDurationMs  = 3_600_000
	MaxFilenameLen = 200
	// MaxScenarioMs bounds every scripted wait (startDelayMs, stallMs,
	// expireAfterMs): a script may slow its own export, not hold a worker
	// for longer than the longest export.
	MaxScenarioMs = MaxDurationMs
)

// Request is the body of POST /v1/exports.
type Request struct {
	Rows       int    `json:"rows"`
	DurationMs int    `json:"durationMs"`
	Filename   string `json:"filename,omitempty"`
	// FailAt, when set, makes the generator fail once progress reaches it.
	FailAt *int `json:"failAt,omitempty"`

	// The scenario fields below (with FailAt) script the export for demos
	// and tests; the API refuses them unless scenarios are enabled.

	// ErrorCode is the FAILED job's error code when FailAt fires.
	ErrorCode string `json:"errorCode,omitempty"`
	// StartDelayMs keeps the job PENDING this long once a worker has it.
	StartDelayMs int `json:"startDelayMs,omitempty"`
	// StallAt and StallMs stop progress at StallAt percent for StallMs.
	StallAt int `json:"stallAt,omitempty"`
	StallMs int `json:"stallMs,omitempty"`
	// DropStreamAt cuts the job's event streams once, right after the
	// first snapshot at or past this percent that they carry, so clients
	// must resume by Last-Event-ID (see CutsStream).
	DropStreamAt int `json:"dropStreamAt,omitempty"`
	// ExpireAfterMs sets the file's expiry this long after completion
	// (instead of the retention period): the download then answers 410.
	ExpireAfterMs int `json:"expireAfterMs,omitempty"`
	// RowsPerSecond paces the generation instead of DurationMs.
	RowsPerSecond int `json:"rowsPerSecond,omitempty"`
}

// Scripted reports whether r uses any scenario field.
func (r Request) Scripted() bool {
	return r.FailAt != nil || r.ErrorCode != "" || r.StartDelayMs != 0 || r.StallAt != 0 ||
		r.StallMs != 0 || r.DropStreamAt != 0 || r.ExpireAfterMs != 0 || r.RowsPerSecond != 0
}

// CutsStream reports whether a stream that carried a snapshot at progress
// before (-1: none yet) is cut after carrying j: the dropStreamAt scenario
// cuts a stream that sees the job cross it, once; the stream that resumes
// starts past it.
func CutsStream(j Job, before int) bool {
	at := j.Request.DropStreamAt
	return at > 0 && j.Status == StatusInProgress && before >= 0 && before < at && j.Progress >= at
}

// Duration is how long the generation is paced over: DurationMs, or the
// rows at RowsPerSecond.
func (r Request) Duration() time.Duration {
	if r.RowsPerSecond > 0 {
		return time.Duration(r.Rows) * time.Second / time.Duration(r.RowsPerSecond)
	}
	return time.Duration(r.DurationMs) * time.Millisecond
}

// Validate checks every field's range and returns the first problem found.
func (r Request) Validate() error {
	switch {
	case r.Rows < 1 || r.Rows > MaxRows:
		return &ValidationError{Field: "rows", Reason: "must be between 1 and 10000000"}
	case r.DurationMs < 0 || r.DurationMs > MaxDurationMs:
		return &ValidationError{Field: "durationMs", Reason: "must be between 0 and 3600000"}
	case len(r.Filename) > MaxFilenameLen:
		return &ValidationError{Field: "filename", Reason: "must be at most 200 bytes"}
	}
	return r.validateScenario()
}

var errorCodePattern = regexp.MustCompile(`^[A-Z][A-Z0-9_]{0,63}$`)

func (r Request) validateScenario() error {
	percent := func(field string, v int) error {
		if v < 0 || v > 99 {
			return &ValidationError{Field: field, Reason: "must be between 1 and 99"}
		}
		return nil
	}
	millis := func(field string, v int) error {
		if v < 0 || v > MaxScenarioMs {
			return &ValidationError{Field: field, Reason: "must be between 1 and 3600000"}
		}
		return nil
	}
	switch {
	case r.FailAt != nil && (*r.FailAt < 1 || *r.FailAt > 99):
		return &ValidationError{Field: "failAt", Reason: "must be between 1 and 99"}
	case r.ErrorCode != "" && r.FailAt == nil:
		return &ValidationError{Field: "errorCode", Reason: "needs failAt"}
	case r.ErrorCode != "" && !errorCodePattern.MatchString(r.ErrorCode):
		return &ValidationError{Field: "errorCode", Reason: "must be 1 to 64 of A-Z, 0-9 and _, starting with a letter"}
	case (r.StallAt == 0) != (r.StallMs == 0):
		return &ValidationError{Field: "stallAt", Reason: "stallAt and stallMs go together"}
	case r.RowsPerSecond < 0 || r.RowsPerSecond > MaxRows:
		return &ValidationError{Field: "rowsPerSecond", Reason: "must be between 1 and 10000000"}
	case r.RowsPerSecond > 0 && r.DurationMs > 0:
		return &ValidationError{Field: "rowsPerSecond", Reason: "give either durationMs or rowsPerSecond"}
	case r.Duration() > MaxDurationMs*time.Millisecond:
		return &ValidationError{Field: "rowsPerSecond", Reason: "rows / rowsPerSecond must be at most 3600 seconds"}
	}
	for _, err := range []error{
		percent("stallAt", r.StallAt), percent("dropStreamAt", r.DropStreamAt),
		millis("startDelayMs", r.StartDelayMs), millis("stallMs", r.StallMs), millis("expireAfterMs", r.ExpireAfterMs),
	} {
		if err != nil {
			return err
		}
	}
	return nil
}

// FileName is the name the download is offered under: the requested one made
// safe (no path separators, control characters or quotes), or a default
// derived from the code.
func FileName(r Request, code string) string {
	name := strings.Map(func(c rune) rune {
		switch {
		case c == '/' || c == '\\' || c == '"' || c == '\'' || unicode.IsControl(c):
			return '_'
		}
		return c
	}, strings.TrimSpace(r.Filename))
	name = strings.Trim(name, ".")
	if name == "" {
		return "export-" + code[:8] + ".csv"
	}
	if !strings.HasSuffix(strings.ToLower(name), ".csv") {
		name += ".csv"
	}
	return name
}

// Fingerprint identifies the request's content, so a replayed
// Idempotency-Key can be told from a reused one.
func (r Request) Fingerprint() string {
	b, _ := json.Marshal(r) // a struct of plain fields cannot fail to encode
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
