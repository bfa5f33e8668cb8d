// Command respnull is a RESP server that does nothing: GET answers nil, SET answers OK, and any
// other command an empty array. It serves connections the way Shoal's server does (a goroutine
// per connection, the same RESP reader, one flush once no complete command is buffered), so
// redis-benchmark against it measures what a Go server pays per request on this machine before
// it does any work: the ceiling Shoal's unpipelined GETs are compared with in
// docs/BENCHMARKS.md (scripts/ab.sh runs it beside redis-server and a Shoal group).
package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"

	"github.com/shoal-kv/shoal/internal/resp"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:6399", "address to listen on")
	flag.Parse()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "respnull:", err)
		os.Exit(1)
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			fmt.Fprintln(os.Stderr, "respnull:", err)
			os.Exit(1)
		}
		go serve(c)
	}
}

// serve answers c's commands until it closes. The process ends with its listener (SIGTERM from
// whoever started it), taking these goroutines with it.
func serve(c net.Conn) {
	defer c.Close()
	w := bufio.NewWriter(c)
	r := resp.NewReader(flusher{c, w}, resp.DefaultLimits())
	for {
		args, err := r.ReadCommand()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				fmt.Fprintln(os.Stderr, "respnull:", err)
			}
			return
		}
		switch name := args[0]; {
		case bytes.EqualFold(name, []byte("get")):
			w.WriteString("$-1\r\n")
		case bytes.EqualFold(name, []byte("set")), bytes.EqualFold(name, []byte("ping")):
			w.WriteString("+OK\r\n")
		default:
			w.WriteString("*0\r\n")
		}
	}
}

// flusher writes the buffered replies out whenever the reader needs more bytes, as Shoal's
// server does.
type flusher struct {
	c net.Conn
	w *bufio.Writer
}

func (f flusher) Read(p []byte) (int, error) {
	if err := f.w.Flush(); err != nil {
		return 0, err
	}
	return f.c.Read(p)
}
