package job

import (
	"errors"
	"fmt"
)

// The domain errors. The HTTP layer maps each to one status and error code.
var (
	ErrNotFound    = errors.New("export not found")
	ErrInvalidCode = errors.New("export code must be a UUID")
	ErrNotReady    = errors.New("export file is not ready")
	ErrQueueFull   = errors.New("too many exports queued, try again later")
	ErrUnavailable = errors.New("service is shutting down")
)

// ValidationError says which field of a request is out of range.
type ValidationError struct {
	Field  string
	Reason string
}

func (e *ValidationError) Error() string { return fmt.Sprintf("%s: %s", e.Field, e.Reason) }

// IsValidation reports whether err is a *ValidationError.
func IsValidation(err error) bool {
	var v *ValidationError
	return errors.As(err, &v)
}
