module github.com/exportstream/exportstream/chaos

go 1.26.0

require (
	github.com/exportstream/exportstream/e2e v0.0.0-00010101000000-000000000000
	github.com/exportstream/exportstream/internal v0.0.0-00010101000000-000000000000
	github.com/tmaxmax/go-sse v0.12.0
)

replace github.com/exportstream/exportstream/internal => ../internal

replace github.com/exportstream/exportstream/e2e => ../e2e
