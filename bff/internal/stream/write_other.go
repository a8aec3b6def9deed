//go:build !unix

package stream

import "net"

// rawWriter is a stand-in where there are no raw sockets: every write
// goes through the stalled path, which blocks a goroutine of its own.
type rawWriter struct{}

func rawConn(net.Conn) rawWriter { return rawWriter{} }

func (rawWriter) ok() bool { return false }

func (rawWriter) writeNow([]byte) (int, error) { return 0, nil }

func (rawWriter) fd() (int, bool) { return 0, false }
