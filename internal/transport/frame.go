package transport

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// Wire format
//
// Every frame is a 4-byte big-endian payload length followed by the payload. The first frame a
// dialer writes on a new connection is a hello (helloSize bytes):
//
//	magic   uint32  "SHRT" — rejects connections from anything that is not a Shoal raft transport
//	version uint16  wire version; bumped on incompatible changes
//	flags   uint16  helloSnapshots, or zero; other bits are refused
//	from    uint64  raft ID of the sending transport
//	to      uint64  raft ID the sender believes it is talking to — catches mis-wired peer lists
//
// Every later frame is one marshalled raftpb.Message. A connection carrying raft's messages is
// one-way: the dialer only writes and the acceptor only reads, so it needs no request/response
// framing. A connection whose hello has helloSnapshots set carries snapshots (MsgSnap) only,
// and its acceptor answers each one with a single byte once it has handed the message to its
// Handler: ackDelivered, or ackDropped if it did not (a snapshot addressed elsewhere, or a
// Handler error). The sender reports the snapshot sent only then, as etcd's rafthttp reports
// it when the receiver's HTTP handler returns: raft probes the follower with an append right
// after the report, and on this separate connection the append could otherwise arrive before
// the snapshot, be refused, and make the leader send the whole snapshot again.
//
// A MsgSnap whose snapshot data lives in a file on the sender (Config.OpenSnapshot) is sent as a
// streamed-snapshot frame instead: the top bit of the length word (streamFlag) is set, and the
// message is followed by the data, outside the frame:
//
//	length  uint32  streamFlag | n, n the length of the message below
//	message [n]byte marshalled raftpb.Message, its Snapshot.Data empty
//	size    uint64  big-endian length of the snapshot data
//	data    [size]byte
//	crc     uint32  big-endian CRC32-C (Castagnoli) of the data
//
// The checksum is the sender's: the receiver's snapshot file gets its own checksum from the bytes
// that arrived, so without it a byte damaged on the way would be installed as a valid snapshot,
// one the node could neither restore nor restart from.
//
// The data is not part of the frame, so the frame limit does not bound it and neither side holds
// it in memory: the sender copies it from its file through the connection's write buffer, and the
// receiver hands it, as a reader of exactly size bytes, to Config.ReceiveSnapshot. An ordinary
// frame's length never has the top bit set (MaxFrameSize is below 2^31), so ordinary frames are
// byte for byte what they were and WireVersion is unchanged: a reader predating streamed frames
// sees a length over its limit and closes the connection, so the sender reports the snapshot
// failed and its other messages flow again once it has redialled.

// castagnoli is the CRC32-C table of streamed snapshots' checksums (hardware-assisted on amd64
// and arm64); it is never written after initialisation.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

const (
	// HelloMagic identifies a Shoal raft transport connection ("SHRT").
	HelloMagic uint32 = 0x53485254
	// WireVersion is the wire-format version carried in the hello frame.
	WireVersion uint16 = 1
	// DefaultMaxFrameSize bounds a single frame (1 GiB), finite so a corrupt length cannot make
	// the reader allocate without limit. Snapshots no longer count against it (their data is
	// streamed after the frame), but it stays this large because raft sends a log entry whole in
	// one MsgApp however big it is, and one client command can be about as large (a RESP
	// command may buffer up to 1 GiB): a lower limit would drop that entry's MsgApp on every
	// retry and stall replication for good. Lower it only together with a cap on proposals.
	DefaultMaxFrameSize = 1 << 30
	// MaxFrameSizeLimit is the largest MaxFrameSize allowed: the top bit of a frame's length
	// word is streamFlag.
	MaxFrameSizeLimit = 1<<31 - 1

	// streamFlag, set in a frame's length word, marks a streamed-snapshot frame (see above).
	streamFlag uint32 = 1 << 31
	// maxStreamSize bounds the size word of a streamed snapshot so that it fits an int64.
	maxStreamSize = 1<<63 - 1

	frameHeaderSize = 4
	helloSize       = 4 + 2 + 2 + 8 + 8

	// maxRetainedBuf is the largest scratch buffer a reader or writer keeps between frames;
	// larger ones (a huge entry, or a snapshot sent inside its frame) are allocated per frame
	// so that one such frame does not pin its size in memory for the connection's lifetime.
	maxRetainedBuf = 1 << 20
	// largeFrameChunk is the initial allocation for frames above maxRetainedBuf: the buffer
	// grows as bytes actually arrive, so a bogus length cannot allocate 1 GiB up front.
	largeFrameChunk = 4 << 20
)

// ErrFrameTooLarge is returned (wrapped) when a frame exceeds the configured maximum size.
var ErrFrameTooLarge = errors.New("transport: frame too large")

// ErrBadHello is returned (wrapped) when a connection's first frame is not a valid hello.
var ErrBadHello = errors.New("transport: bad hello")

// hello is the first frame of every connection.
type hello struct {
	From, To uint64
	Flags    uint16
}

const (
	// helloSnapshots marks a connection that carries snapshots and is answered with acks.
	helloSnapshots uint16 = 1

	// The acceptor's answer to each MsgSnap on a snapshot connection.
	ackDropped   byte = 0
	ackDelivered byte = 1
)

// appendHello appends the complete hello frame (header included) to b.
func appendHello(b []byte, h hello) []byte {
	b = binary.BigEndian.AppendUint32(b, helloSize)
	b = binary.BigEndian.AppendUint32(b, HelloMagic)
	b = binary.BigEndian.AppendUint16(b, WireVersion)
	b = binary.BigEndian.AppendUint16(b, h.Flags)
	b = binary.BigEndian.AppendUint64(b, h.From)
	b = binary.BigEndian.AppendUint64(b, h.To)
	return b
}

// readHello reads and validates the hello frame. It checks the length before anything else so a
// non-Shoal client (say, an HTTP request) is rejected after 4 bytes.
func readHello(r io.Reader) (hello, error) {
	var buf [frameHeaderSize + helloSize]byte
	if _, err := io.ReadFull(r, buf[:frameHeaderSize]); err != nil {
		return hello{}, fmt.Errorf("read hello header: %w", err)
	}
	if n := binary.BigEndian.Uint32(buf[:frameHeaderSize]); n != helloSize {
		return hello{}, fmt.Errorf("%w: length %d, want %d", ErrBadHello, n, helloSize)
	}
	if _, err := io.ReadFull(r, buf[frameHeaderSize:]); err != nil {
		return hello{}, fmt.Errorf("read hello: %w", err)
	}
	p := buf[frameHeaderSize:]
	if magic := binary.BigEndian.Uint32(p[0:4]); magic != HelloMagic {
		return hello{}, fmt.Errorf("%w: magic %#x", ErrBadHello, magic)
	}
	if v := binary.BigEndian.Uint16(p[4:6]); v != WireVersion {
		return hello{}, fmt.Errorf("%w: version %d, want %d", ErrBadHello, v, WireVersion)
	}
	f := binary.BigEndian.Uint16(p[6:8])
	if f&^helloSnapshots != 0 {
		return hello{}, fmt.Errorf("%w: unknown flags %#x", ErrBadHello, f)
	}
	h := hello{From: binary.BigEndian.Uint64(p[8:16]), To: binary.BigEndian.Uint64(p[16:24]), Flags: f}
	if h.From == 0 {
		return hello{}, fmt.Errorf("%w: sender id 0", ErrBadHello)
	}
	return h, nil
}

// frameReader reads length-prefixed frames, reusing one buffer for ordinary-sized frames.
type frameReader struct {
	r   *bufio.Reader
	max int
	buf []byte
}

// next returns the next frame's payload, and whether it is a streamed-snapshot frame, whose
// snapshot data the caller must then read (streamSize, then the data) before the next frame.
// The slice is valid only until the following call; callers must copy what they keep (raftpb's
// Unmarshal copies byte fields, so decoding is enough).
func (fr *frameReader) next() (payload []byte, streamed bool, err error) {
	var hdr [frameHeaderSize]byte
	if _, err := io.ReadFull(fr.r, hdr[:]); err != nil {
		return nil, false, err // io.EOF here is a clean close between frames
	}
	n := binary.BigEndian.Uint32(hdr[:])
	streamed = n&streamFlag != 0
	n &^= streamFlag
	if uint64(n) > uint64(fr.max) {
		return nil, false, fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, n, fr.max)
	}
	if n <= maxRetainedBuf {
		if cap(fr.buf) < int(n) {
			fr.buf = make([]byte, n, max(int(n), 64<<10))
		}
		b := fr.buf[:n]
		if _, err := io.ReadFull(fr.r, b); err != nil {
			return nil, false, fmt.Errorf("read frame body (%d bytes): %w", n, noEOF(err))
		}
		return b, streamed, nil
	}
	var bb bytes.Buffer
	bb.Grow(min(int(n), largeFrameChunk))
	got, err := io.CopyN(&bb, fr.r, int64(n))
	if err != nil {
		return nil, false, fmt.Errorf("read frame body (%d of %d bytes): %w", got, n, noEOF(err))
	}
	return bb.Bytes(), streamed, nil
}

// streamSize reads the size word that follows a streamed-snapshot frame's message.
func (fr *frameReader) streamSize() (int64, error) {
	var b [8]byte
	if _, err := io.ReadFull(fr.r, b[:]); err != nil {
		return 0, fmt.Errorf("read snapshot size: %w", noEOF(err))
	}
	size := binary.BigEndian.Uint64(b[:])
	if size > maxStreamSize {
		return 0, fmt.Errorf("%w: snapshot of %d bytes", ErrFrameTooLarge, size)
	}
	return int64(size), nil
}

// noEOF turns io.EOF into io.ErrUnexpectedEOF: inside a frame, EOF means truncation.
func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
