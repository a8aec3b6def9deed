module github.com/exportstream/exportstream/chaos

go 1.26.0

require github.com/tmaxmax/go-sse v0.12.0
