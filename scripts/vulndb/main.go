// Command vulndb runs govulncheck without network access to its database
// (`make vulncheck`; RELIABILITY.md, Security):
//
//	vulndb gen -version V -out DIR
//	    builds the database in DIR from the module golang.org/x/vulndb@V,
//	    which the Go module proxy serves (gen.go)
//	vulndb check -govulncheck BIN -db DIR [-accept FILE] MODULE_DIR...
//	    runs govulncheck on each Go module against it and fails on a
//	    vulnerability in a reachable path, unless FILE accepts it (check.go)
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: vulndb gen|check [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "gen":
		err = gen(os.Args[2:])
	case "check":
		err = check(os.Args[2:])
	default:
		fmt.Fprintf(os.Stderr, "vulndb: unknown command %q (gen or check)\n", os.Args[1])
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "vulndb:", err)
		os.Exit(1)
	}
}
