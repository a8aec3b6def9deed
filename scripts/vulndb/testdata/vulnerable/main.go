// A module that reaches a known vulnerability: golang.org/x/text v0.3.5's
// language.Parse (GO-2021-0113, fixed in v0.3.7). The check must fail on it.
package main

import (
	"fmt"
	"os"

	"golang.org/x/text/language"
)

func main() {
	tag, err := language.Parse(os.Args[1])
	fmt.Println(tag, err)
}
