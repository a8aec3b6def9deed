package httpapi

import (
	"strings"
)

// contentDisposition builds an RFC 6266 attachment header: an ASCII
// fallback in filename= and the exact UTF-8 name in filename*=. The name is
// already sanitised by job.FileName (no separators, quotes or controls).
func contentDisposition(name string) string {
	var ascii, ext strings.Builder
	for _, r := range name {
		if r >= 0x20 && r < 0x7f && r != '"' && r != '\\' && r != '%' {
			ascii.WriteRune(r)
		} else {
			ascii.WriteByte('_')
		}
	}
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(name); i++ {
		b := name[i]
		if isAttrChar(b) {
			ext.WriteByte(b)
			continue
		}
		ext.WriteByte('%')
		ext.WriteByte(hex[b>>4])
		ext.WriteByte(hex[b&0xf])
	}
	return `attachment; filename="` + ascii.String() + `"; filename*=UTF-8''` + ext.String()
}

// isAttrChar is RFC 5987's attr-char: what may stand unescaped in filename*.
func isAttrChar(b byte) bool {
	switch {
	case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9':
		return true
	}
	return strings.IndexByte("!#$&+-.^_`|~", b) >= 0
}
