package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// rawPoster sends one fixed POST again and again on one kept-alive
// HTTP/1.1 connection, reading each response in full before the next.
// The create scenario uses it instead of net/http's client, whose
// per-request allocations and two goroutines per connection cost 50-55 µs
// of CPU per create (measured with getrusage around the load; the backend
// takes ~115): on two cores shared with the backend that is about 30 %
// of the CPU the benchmark burns. rawPoster costs ~22 µs. It checks what the
// scenario needs: status 202 and a JSON body with a code.
// BENCH_CREATE_NETHTTP=1 uses net/http instead, for comparison.
type rawPoster struct {
	addr string // host:port, 127.0.0.0/8 only (dialLoopback)
	req  []byte
	conn net.Conn
	br   *bufio.Reader
	body []byte
}

func newRawPoster(baseURL, path, body string) (*rawPoster, error) {
	host, ok := strings.CutPrefix(baseURL, "http://")
	if !ok {
		return nil, fmt.Errorf("raw poster: %s is not http://host:port", baseURL)
	}
	req := "POST " + path + " HTTP/1.1\r\nHost: " + host + "\r\nContent-Type: application/json\r\nContent-Length: " +
		strconv.Itoa(len(body)) + "\r\n\r\n" + body
	return &rawPoster{addr: host, req: []byte(req)}, nil
}

// post sends the request (dialling first if needed) and reads the answer;
// on any error the connection is dropped and the next post redials.
func (p *rawPoster) post(ctx context.Context) error {
	if p.conn == nil {
		c, err := dialLoopback(ctx, "tcp", p.addr)
		if err != nil {
			return err
		}
		p.conn, p.br = c, bufio.NewReaderSize(c, 4096)
	}
	_ = p.conn.SetDeadline(time.Now().Add(20 * time.Second))
	err := p.roundTrip()
	if err != nil {
		p.close()
	}
	return err
}

func (p *rawPoster) close() {
	if p.conn != nil {
		_ = p.conn.Close()
		p.conn, p.br = nil, nil
	}
}

var errNoCode = errors.New("202 without a code in the body")

// selfCPU is the CPU time (user + system) this process has used so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func (p *rawPoster) roundTrip() error {
	if _, err := p.conn.Write(p.req); err != nil {
		return err
	}
	line, err := p.br.ReadSlice('\n')
	if err != nil {
		return err
	}
	// "HTTP/1.1 202 Accepted\r\n"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.1 ")) {
		return fmt.Errorf("bad status line %q", line)
	}
	status, err := strconv.Atoi(string(line[9:12]))
	if err != nil {
		return fmt.Errorf("bad status line %q", line)
	}
	length, closeAfter := -1, false
	for {
		h, err := p.br.ReadSlice('\n')
		if err != nil {
			return err
		}
		h = bytes.TrimRight(h, "\r\n")
		if len(h) == 0 {
			break
		}
		name, value, ok := bytes.Cut(h, []byte(":"))
		if !ok {
			return fmt.Errorf("bad header line %q", h)
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			if length, err = strconv.Atoi(string(value)); err != nil || length < 0 {
				return fmt.Errorf("bad Content-Length %q", value)
			}
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			return fmt.Errorf("unexpected Transfer-Encoding %q", value)
		case bytes.EqualFold(name, []byte("Connection")) && bytes.EqualFold(value, []byte("close")):
			closeAfter = true
		}
	}
	if length < 0 {
		return errors.New("response without Content-Length")
	}
	if cap(p.body) < length {
		p.body = make([]byte, length)
	}
	p.body = p.body[:length]
	if _, err := io.ReadFull(p.br, p.body); err != nil {
		return err
	}
	if closeAfter {
		p.close()
	}
	if status != 202 {
		return fmt.Errorf("POST: %d %s", status, p.body)
	}
	if !bytes.Contains(p.body, []byte(`"code":"`)) {
		return errNoCode
	}
	return nil
}
