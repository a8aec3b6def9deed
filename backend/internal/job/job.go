// Package job is the export domain: states, the job snapshot that every
// endpoint and event carries, request validation and the domain errors that
// the HTTP layer maps to statuses. It knows nothing of HTTP or SSE.
package job

import (
	"time"

	"github.com/google/uuid"
)

// Status is the state of a job. COMPLETED, FAILED and CANCELLED are terminal.
type Status string

// The job states, in the order a job moves through them.
const (
	StatusPending    Status = "PENDING"
	StatusInProgress Status = "IN_PROGRESS"
	StatusCompleted  Status = "COMPLETED"
	StatusFailed     Status = "FAILED"
	StatusCancelled  Status = "CANCELLED"
)

// Terminal reports whether no further change can follow s.
func (s Status) Terminal() bool {
	return s == StatusCompleted || s == StatusFailed || s == StatusCancelled
}

// Job is the snapshot of an export. The same object is returned by every
// endpoint and carried by every event; Seq grows by one with every change.
type Job struct {
	Code      string    `json:"code"`
	Status    Status    `json:"status"`
	Progress  int       `json:"progress"`
	RowsDone  int       `json:"rowsDone"`
	RowsTotal int       `json:"rowsTotal"`
	Seq       int64     `json:"seq"`
	CreatedAt time.Time `json:"createdAt"`
	UpdatedAt time.Time `json:"updatedAt"`
	File      *File     `json:"file,omitempty"`
	Error     *Failure  `json:"error,omitempty"`

	// Request is what the job was created with; the generator reads it.
	Request Request `json:"-"`
	// Owner is the X-Export-Owner that created it; only that owner sees it.
	Owner string `json:"-"`
}

// File describes the generated file of a COMPLETED job.
type File struct {
	Name        string `json:"name"`
	Size        int64  `json:"size"`
	SHA256      string `json:"sha256"`
	ContentType string `json:"contentType"`
	// URL is filled in per response from the caller's X-Forwarded-Prefix,
	// so the stored value is always empty.
	URL string `json:"url"`
	// ExpiresAt is when the retention sweeper deletes the file (then 410).
	ExpiresAt time.Time `json:"expiresAt"`
}

// Failure says why a job FAILED.
type Failure struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// New returns a PENDING job of owner for r with a fresh random code.
func New(r Request, owner string, now time.Time) Job {
	return Job{
		Code:      uuid.NewString(),
		Status:    StatusPending,
		RowsTotal: r.Rows,
		Seq:       1,
		CreatedAt: now,
		UpdatedAt: now,
		Request:   r,
		Owner:     owner,
	}
}

// ParseCode checks that s is a UUID in its canonical form and returns it
// lower-cased, so one job never has two spellings.
func ParseCode(s string) (string, error) {
	if len(s) != 36 {
		return "", ErrInvalidCode
	}
	u, err := uuid.Parse(s)
	if err != nil {
		return "", ErrInvalidCode
	}
	return u.String(), nil
}
