//go:build !linux

package store

// diskState cannot tell here: creates rely on the reserve alone.
func diskState(string) (free int64, readOnly, ok bool) { return 0, false, false }
