package store

import "syscall"

// diskState reads dir's disk: the room left for an unprivileged writer
// and whether it is mounted read-only.
func diskState(dir string) (free int64, readOnly, ok bool) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, false, false
	}
	const stRdonly = 0x1 // ST_RDONLY in statfs(2)'s f_flags
	return int64(st.Bavail) * st.Bsize, st.Flags&stRdonly != 0, true
}
