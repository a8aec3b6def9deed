module github.com/exportstream/exportstream/bench

go 1.26.0

require (
	github.com/tmaxmax/go-sse v0.12.0
	golang.org/x/sys v0.50.0
)
