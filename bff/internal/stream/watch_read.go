package stream

import "io"

// watchByReading notices a hang-up by reading the connection until it
// fails, in a goroutine that ends when the stream's connection closes.
func watchByReading(s *Stream) {
	s.p.stalls.Add(1)
	go func() {
		defer s.p.stalls.Done()
		_, _ = io.Copy(io.Discard, s.conn)
		s.hungUp()
	}()
}
