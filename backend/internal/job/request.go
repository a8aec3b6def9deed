package job

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"
	"unicode"
)

// Limits of a request. They keep one export from taking the machine.
const (
	MaxRows        = 10_000_000
	MaxDurationMs  = 3_600_000
	MaxFilenameLen = 200
)

// Request is the body of POST /v1/exports.
type Request struct {
	Rows       int    `json:"rows"`
	DurationMs int    `json:"durationMs"`
	Filename   string `json:"filename,omitempty"`
	// FailAt, when set, makes the generator fail once progress reaches it.
	FailAt *int `json:"failAt,omitempty"`
}

// Validate checks every field's range and returns the first problem found.
func (r Request) Validate() error {
	switch {
	case r.Rows < 1 || r.Rows > MaxRows:
		return &ValidationError{Field: "rows", Reason: "must be between 1 and 10000000"}
	case r.DurationMs < 0 || r.DurationMs > MaxDurationMs:
		return &ValidationError{Field: "durationMs", Reason: "must be between 0 and 3600000"}
	case r.FailAt != nil && (*r.FailAt < 1 || *r.FailAt > 99):
		return &ValidationError{Field: "failAt", Reason: "must be between 1 and 99"}
	case len(r.Filename) > MaxFilenameLen:
		return &ValidationError{Field: "filename", Reason: "must be at most 200 bytes"}
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
