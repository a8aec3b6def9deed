package job

import (
	"errors"
	"fmt"
)

// The domain errors. The HTTP layer maps each to one status and error code.
var (
	ErrNotFound      = errors.New("export not found")
	ErrInvalidCode   = errors.New("export code must be a UUID")
	ErrNotReady      = errors.New("export file is not ready")
	ErrGone          = errors.New("export file has expired and was deleted")
	ErrQueueFull     = errors.New("too many exports queued, try again later")
	ErrTooManyActive = errors.New("too many exports running for this owner, wait for one to finish")
	ErrUnavailable   = errors.New("service is shutting down")
	// ErrStoreUnavailable wraps a failure to reach a shared store (Redis):
	// the request may succeed when it is back.
	ErrStoreUnavailable = errors.New("the job store is unreachable, try again shortly")
	// ErrStorageFull: the disk of the data directory is full (ENOSPC,
	// EDQUOT, EFBIG). Creates are refused until there is room again.
	ErrStorageFull = errors.New("the export service's storage is full, try again later")
	// ErrStorageReadOnly: the data directory cannot be written (EROFS).
	ErrStorageReadOnly = errors.New("the export service's storage is read-only, try again later")
	ErrKeyReused       = errors.New("this Idempotency-Key was used with a different request")
	// ErrKeyOfDeletedExport: the key's export was deleted; a new key starts another.
	ErrKeyOfDeletedExport = errors.New("the export this Idempotency-Key started was deleted; use a new key to start another")
	// ErrTerminal is returned by a change to a job that has already ended.
	ErrTerminal = errors.New("export has already ended")
)

// ValidationError says which field of a request is out of range.
type ValidationError struct {
	Field  string
	Reason string
}

func (e *ValidationError) Error() string { return fmt.Sprintf("%s: %s", e.Field, e.Reason) }
