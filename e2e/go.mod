module github.com/exportstream/exportstream/e2e

go 1.26.0

require (
	github.com/exportstream/exportstream/internal v0.0.0-00010101000000-000000000000
	github.com/redis/go-redis/v9 v9.23.0
	github.com/tmaxmax/go-sse v0.12.0
	go.etcd.io/bbolt v1.5.0
)

require (
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	go.uber.org/atomic v1.12.0 // indirect
	golang.org/x/sys v0.48.0 // indirect
)

replace github.com/exportstream/exportstream/internal => ../internal
