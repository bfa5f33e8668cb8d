package server

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoal-kv/shoal/internal/resp"
)

// fuzzLimits are small so that the fuzzer reaches every limit quickly.
var fuzzLimits = resp.Limits{MaxBulk: 1 << 10, MaxArray: 64, MaxInline: 256, MaxBuffered: 8 << 10}

// maxReply bounds one reply of the server under fuzzLimits: the largest is COMMAND's
// description of every command (about 20 KiB); MGET of 63 keys of 1 KiB is smaller.
const maxReply = 256 << 10

// panicWatch is a slog handler that records panics the server recovered from: the server
// keeps running after a panic in one connection, so the fuzzer would not see it otherwise.
type panicWatch struct {
	mu     sync.Mutex
	panics []string
}

func (h *panicWatch) Enabled(context.Context, slog.Level) bool { return true }
func (h *panicWatch) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *panicWatch) WithGroup(string) slog.Handler            { return h }
func (h *panicWatch) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(r.Message, "panic") {
		var b strings.Builder
		b.WriteString(r.Message)
		r.Attrs(func(a slog.Attr) bool {
			b.WriteString(" " + a.String())
			return true
		})
		h.mu.Lock()
		h.panics = append(h.panics, b.String())
		h.mu.Unlock()
	}
	return nil
}

func (h *panicWatch) take() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	p := h.panics
	h.panics = nil
	return p
}

// expectedReplies parses data as the server does and returns how many replies a correct
// server sends: one per complete command, plus one error for a protocol error (after which the
// server closes). A command that may close the connection (QUIT, possibly inside a wrapper)
// ends the model with a range [lo, lo+1] because whether its reply is sent depends on how it
// is wrapped.
func expectedReplies(data []byte) (lo, hi int) {
	r := resp.NewReader(bytes.NewReader(data), fuzzLimits)
	for {
		args, err := r.ReadCommand()
		if err != nil {
			var pe *resp.ProtocolError
			if errors.As(err, &pe) {
				return lo + 1, lo + 1
			}
			return lo, lo
		}
		if mayQuit(args) {
			// Whether it really closes depends on the wrapper being well formed (a malformed
			// "SHOAL.FWD QUIT" is an arity error and the connection goes on), so allow every
			// later complete command to be answered too.
			rest := 0
			for {
				if _, err := r.ReadCommand(); err != nil {
					var pe *resp.ProtocolError
					if errors.As(err, &pe) {
						rest++
					}
					break
				}
				rest++
			}
			return lo, lo + 1 + rest
		}
		lo++
	}
}

// mayQuit reports whether a command may close the connection: QUIT itself, or a SHOAL.*
// wrapper with QUIT among its arguments.
func mayQuit(args [][]byte) bool {
	if equalFold(args[0], "quit") {
		return true
	}
	if !equalFold(args[0], "shoal.fwd") && !equalFold(args[0], "shoal.at") {
		return false
	}
	for _, a := range args[1:] {
		if equalFold(a, "quit") {
			return true
		}
	}
	return false
}

// FuzzCommands sends arbitrary bytes to a real server connection backed by the fake backend
// and checks that the server neither panics nor stalls, that every reply is well formed and
// bounded, and that every complete command gets exactly one reply.
func FuzzCommands(f *testing.F) {
	for _, s := range []string{
		"*1\r\n$4\r\nPING\r\n",
		"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n",
		"SET k v\r\nGET k\r\nINCR n\r\nMGET k n x\r\nDEL k n\r\n",
		"MSET a 1 b 2\r\nSCAN 0 MATCH * COUNT 5\r\nDBSIZE\r\nEXISTS a b c\r\n",
		"SET k v NX GET\r\nSET k v EX 10\r\nAPPEND k w\r\nDECRBY k 3\r\nINCRBY n 9223372036854775807\r\n",
		"CLUSTER SLOTS\r\nCLUSTER SHARDS\r\nCLUSTER NODES\r\nCLUSTER KEYSLOT {a}b\r\nCLUSTER BOGUS\r\n",
		"COMMAND INFO get set cluster|slots nope\r\nCOMMAND COUNT\r\nCOMMAND LIST\r\n",
		"HELLO 2 SETNAME x\r\nHELLO 3\r\nAUTH a b\r\nCLIENT SETNAME y\r\nCLIENT LIST\r\nCLIENT CAPA redirect\r\n",
		"INFO all\r\nCONFIG GET *\r\nSELECT 0\r\nSELECT 1\r\nREADONLY\r\nASKING\r\n",
		"SHOAL.AT 1 1 0 SET k v\r\nSHOAL.FWD 1 GET k\r\nSHOAL.FWD 1 SHOAL.FWD 1 SHOAL.AT 1 2 1 GET k\r\n",
		"SHOAL.CAS k VALUE v w\r\nSHOAL.CAS k ABSENT z\r\nSHOAL.PULL 1 0 10 100\r\nSHOAL.DROP 1 0 10\r\n",
		"GET\r\nNOPE a b\r\nget k extra\r\n\r\n*0\r\n*-1\r\n",
		"*2\r\n$3\r\nGET\r\n$2000\r\nxx",
		"*1\r\nx\r\n",
		"\"unbalanced\r\n",
		"*99999999999999999999\r\n",
		"PING\r\nQUIT\r\nPING\r\n",
		"SHOAL.FWD 1 QUIT\r\nPING\r\n",
		"*2\r\n$4\r\nECHO\r\n$3\r\nabc\r\n*1\r\n$4\r\nPI",
	} {
		f.Add([]byte(s))
	}
	watch := &panicWatch{}
	be := newFakeBackend()
	topo := &fakeTopology{}
	srv := New(Config{Addr: "127.0.0.1:0", Backend: be, Topology: topo, Logger: slog.New(watch),
		Limits: fuzzLimits, RequestTimeout: time.Second})
	if err := srv.Start(context.Background()); err != nil {
		f.Fatal(err)
	}
	defer srv.Close()
	addr := srv.Addr().String()
	topo.setAddr(addr)

	f.Fuzz(func(t *testing.T, data []byte) {
		be.mu.Lock()
		be.m = map[string]fakeValue{} // keep the fake's memory bounded across inputs
		be.mu.Unlock()
		lo, hi := expectedReplies(data)

		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		nc.SetDeadline(time.Now().Add(10 * time.Second))
		werr := make(chan error, 1)
		go func() { // written concurrently: the server's replies must not fill the socket first
			_, err := nc.Write(data)
			if err == nil {
				err = nc.(*net.TCPConn).CloseWrite()
			}
			werr <- err
		}()
		r := resp.NewReader(nc, resp.Limits{MaxBulk: maxReply, MaxBuffered: maxReply, MaxArray: 1 << 16})
		got := 0
		for {
			_, err := r.ReadValue()
			if err != nil {
				if errors.Is(err, io.EOF) || isReset(err) {
					break
				}
				t.Fatalf("reply %d: %v", got+1, err)
			}
			got++
			if got > hi {
				t.Fatalf("more replies (%d) than commands (%d..%d)", got, lo, hi)
			}
		}
		if err := <-werr; err != nil && !isReset(err) && !errors.Is(err, net.ErrClosed) &&
			!strings.Contains(err.Error(), "broken pipe") {
			t.Fatalf("write: %v", err)
		}
		if p := watch.take(); len(p) > 0 {
			t.Fatalf("server panicked: %s", p[0])
		}
		if got < lo || got > hi {
			t.Fatalf("%d replies for %d..%d complete commands", got, lo, hi)
		}
	})
}
