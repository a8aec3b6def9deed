package job_test

import (
	"testing"

	"github.com/exportstream/exportstream/backend/internal/job"
)

func TestParseCodeAcceptsOnlyCanonicalUUIDs(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"6F1C0B1E-4B7A-4C55-9C1E-3F0A8D2B7C11", "6f1c0b1e-4b7a-4c55-9c1e-3f0a8d2b7c11", true},
		{"6f1c0b1e-4b7a-4c55-9c1e-3f0a8d2b7c11", "6f1c0b1e-4b7a-4c55-9c1e-3f0a8d2b7c11", true},
		{"{6f1c0b1e-4b7a-4c55-9c1e-3f0a8d2b7c11}", "", false},
		{"urn:uuid:6f1c0b1e-4b7a-4c55-9c1e-3f0a8d2b7c11", "", false},
		{"6f1c0b1e4b7a4c559c1e3f0a8d2b7c11", "", false},
		{"", "", false},
		{"../../etc/passwd", "", false},
	}
	for _, tt := range tests {
		got, err := job.ParseCode(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseCode(%q) = %q, %v; want %q, ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestFileNameIsSafeAndEndsInCSV(t *testing.T) {
	code := "6f1c0b1e-4b7a-4c55-9c1e-3f0a8d2b7c11"
	tests := map[string]string{
		"":                   "export-6f1c0b1e.csv",
		"report":             "report.csv",
		"Q3 sales.CSV":       "Q3 sales.CSV",
		"../../etc/passwd":   "_.._etc_passwd.csv",
		"a\"b'c\\d\x00e.csv": "a_b_c_d_e.csv",
		"   ":                "export-6f1c0b1e.csv",
		"naïve résumé.csv":   "naïve résumé.csv",
	}
	for in, want := range tests {
		if got := job.FileName(job.Request{Filename: in}, code); got != want {
			t.Errorf("FileName(%q) = %q, want %q", in, got, want)
		}
	}
}
