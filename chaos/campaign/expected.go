package campaign

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"sync"

	"github.com/exportstream/exportstream/internal/exportfile"
)

// expectedFile is the file a job of code and rows must hold, byte for byte
// (a ranged download is checked against a slice of it).
func expectedFile(code string, rows int) []byte {
	var b bytes.Buffer
	b.WriteString(exportfile.Header)
	_ = exportfile.WriteRows(&b, code, 0, rows) // a bytes.Buffer does not fail
	return b.Bytes()
}

// SHA256Hex is the hex SHA-256 of b.
func SHA256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// files caches expected files for the checker (a run has tens of them).
type files struct {
	mu sync.Mutex
	m  map[string][]byte
}

func (f *files) get(code string, rows int) []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := code + "/" + strconv.Itoa(rows)
	if b, ok := f.m[k]; ok {
		return b
	}
	if f.m == nil {
		f.m = map[string][]byte{}
	}
	b := expectedFile(code, rows)
	f.m[k] = b
	return b
}
