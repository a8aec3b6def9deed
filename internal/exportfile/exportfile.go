// Package exportfile is the content of every export: a CSV derived only
// from the export's code and row count, so anyone can recompute a file and
// its SHA-256. The backend's generator writes it; the system tests and the
// store's and worker's tests recompute it to check a download.
package exportfile

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"strconv"
	"sync"
)

// Header is the first line of every file.
const Header = "id,code,item,quantity,amount_cents\n"

// AppendRow appends row i (1-based) of the file for code. Rows are derived
// only from the code and i, so anyone can recompute a file and its SHA-256:
// h = FNV-1a-64(code + ":" + i) and the row is
// "i,code,item-<h%1000>,<h%100+1>,<h%1000000>\n".
func AppendRow(dst []byte, code string, i int) []byte {
	h := fnv1a(code, i)
	dst = strconv.AppendInt(dst, int64(i), 10)
	dst = append(dst, ',')
	dst = append(dst, code...)
	dst = append(dst, ",item-"...)
	dst = strconv.AppendUint(dst, h%1000, 10)
	dst = append(dst, ',')
	dst = strconv.AppendUint(dst, h%100+1, 10)
	dst = append(dst, ',')
	dst = strconv.AppendUint(dst, h%1_000_000, 10)
	return append(dst, '\n')
}

// rowBuffers hold the 64 KiB that WriteRows fills between writes. A
// generator calls it once per chunk, often for a row or two: a buffer per
// call was 64 KiB allocated and cleared per progress event, which with a
// thousand exports generating made the GC most of the backend's CPU.
var rowBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 64*1024); return &b }}

// WriteRows writes rows [from, to) of code's file to w.
func WriteRows(w io.Writer, code string, from, to int) error {
	bp := rowBuffers.Get().(*[]byte)
	defer rowBuffers.Put(bp)
	buf := (*bp)[:0]
	defer func() { *bp = buf[:0] }()
	for i := from; i < to; i++ {
		buf = AppendRow(buf, code, i+1)
		if len(buf) > 60*1024 {
			if _, err := w.Write(buf); err != nil {
				return err
			}
			buf = buf[:0]
		}
	}
	_, err := w.Write(buf)
	return err
}

func fnv1a(code string, i int) uint64 {
	const offset, prime = 14695981039346656037, 1099511628211
	h := uint64(offset)
	for j := 0; j < len(code); j++ {
		h = (h ^ uint64(code[j])) * prime
	}
	h = (h ^ ':') * prime
	var digits [20]byte
	for _, c := range strconv.AppendInt(digits[:0], int64(i), 10) {
		h = (h ^ uint64(c)) * prime
	}
	return h
}

// SHA256 is the hex SHA-256 of code's whole file of rows rows: Header, then
// rows 1 to rows.
func SHA256(code string, rows int) string {
	h := sha256.New()
	_, _ = io.WriteString(h, Header)
	_ = WriteRows(h, code, 0, rows)
	return hex.EncodeToString(h.Sum(nil))
}
