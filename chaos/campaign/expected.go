package campaign

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"sync"
)

// ExpectedFile is the CSV a job's file must hold, recomputed from its code
// and row count as docs/api.md (The file) specifies: a header, then for row i = 1…rows,
// with h = FNV-1a-64 of "<code>:<i>", "i,<code>,item-<h%1000>,<h%100+1>,<h%1000000>".
func ExpectedFile(code string, rows int) []byte {
	b := make([]byte, 0, 40+rows*(len(code)+32))
	b = append(b, "id,code,item,quantity,amount_cents\n"...)
	for i := 1; i <= rows; i++ {
		h := fnv1a(code + ":" + strconv.Itoa(i))
		b = strconv.AppendInt(b, int64(i), 10)
		b = append(b, ',')
		b = append(b, code...)
		b = append(b, ",item-"...)
		b = strconv.AppendUint(b, h%1000, 10)
		b = append(b, ',')
		b = strconv.AppendUint(b, h%100+1, 10)
		b = append(b, ',')
		b = strconv.AppendUint(b, h%1_000_000, 10)
		b = append(b, '\n')
	}
	return b
}

func fnv1a(s string) uint64 {
	const offset, prime = 14695981039346656037, 1099511628211
	h := uint64(offset)
	for i := 0; i < len(s); i++ {
		h = (h ^ uint64(s[i])) * prime
	}
	return h
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
	b := ExpectedFile(code, rows)
	f.m[k] = b
	return b
}
