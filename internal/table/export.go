package table

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/shoal-kv/shoal/internal/keyspace"
)

// Export stream format (version 1):
//
//	"SHTB" 0x01                         magic and version
//	{ uvarint(klen+1) key uvarint(vlen) val }   one per pair
//	uvarint(0) uvarint(count) crc32c    end marker: pair count, then CRC-32C (little-endian) of
//	                                    every preceding byte of the stream
//
// The stream is self-delimiting, so it can be followed by other data in the same reader.
const (
	exportMagic   = "SHTB"
	exportVersion = 1
	// maxImportLen bounds one key or value read from a stream, so a corrupt length cannot make
	// Import allocate without limit (Redis's proto-max-bulk-len is 512 MiB).
	maxImportLen = 1 << 30
)

// ErrCorrupt is returned (wrapped) by Import for a stream that is not a valid export.
var ErrCorrupt = errors.New("table: corrupt export stream")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Export writes the pairs in the slots of r to w as a self-describing stream (see Import) and
// returns how many it wrote. Each slot is copied under its read lock into a buffer that is
// written after the lock is released, so a slow w never blocks writers; the stream is a
// consistent snapshot of each slot, not of the whole range.
func (t *Table) Export(w io.Writer, r keyspace.Range) (n int, err error) {
	lo, hi := clampRange(r)
	crc := uint32(0)
	buf := make([]byte, 0, 64<<10)
	buf = append(buf, exportMagic...)
	buf = append(buf, exportVersion)
	flush := func() error {
		crc = crc32.Update(crc, castagnoli, buf)
		_, err := w.Write(buf)
		buf = buf[:0]
		return err
	}
	for slot := lo; slot < hi; slot++ {
		s := t.reader(uint16(slot))
		if s == nil {
			continue
		}
		s.mu.RLock()
		s.each(func(k, v []byte) bool {
			buf = binary.AppendUvarint(buf, uint64(len(k))+1)
			buf = append(buf, k...)
			buf = binary.AppendUvarint(buf, uint64(len(v)))
			buf = append(buf, v...)
			n++
			return true
		})
		s.mu.RUnlock()
		if len(buf) >= 32<<10 {
			if err := flush(); err != nil {
				return n, err
			}
		}
	}
	buf = binary.AppendUvarint(buf, 0)
	buf = binary.AppendUvarint(buf, uint64(n))
	crc = crc32.Update(crc, castagnoli, buf)
	buf = binary.LittleEndian.AppendUint32(buf, crc)
	if _, err := w.Write(buf); err != nil {
		return n, err
	}
	return n, nil
}

// Import reads a stream written by Export and stores its pairs (overwriting existing keys),
// returning how many it stored. It stops right after the end marker when rd is an
// io.ByteReader (such as a *bufio.Reader); otherwise it buffers and may read past the end.
// A stream that is truncated, has a wrong count or fails its checksum yields an error wrapping
// ErrCorrupt (or the read error); the pairs read before the error have been stored, so callers
// restoring a snapshot should Reset and give up on error.
func (t *Table) Import(rd io.Reader) (n int, err error) {
	br, ok := rd.(byteReader)
	if !ok {
		br = bufio.NewReader(rd)
	}
	cr := &crcReader{r: br}
	var hdr [len(exportMagic) + 1]byte
	if _, err := io.ReadFull(cr, hdr[:]); err != nil {
		return 0, importErr(err)
	}
	if string(hdr[:len(exportMagic)]) != exportMagic {
		return 0, fmt.Errorf("%w: bad magic", ErrCorrupt)
	}
	if hdr[len(exportMagic)] != exportVersion {
		return 0, fmt.Errorf("%w: unsupported version %d", ErrCorrupt, hdr[len(exportMagic)])
	}
	var key, val []byte
	for {
		kl, err := binary.ReadUvarint(cr)
		if err != nil {
			return n, importErr(err)
		}
		if kl == 0 {
			break
		}
		kl--
		if kl > maxImportLen {
			return n, fmt.Errorf("%w: key length %d", ErrCorrupt, kl)
		}
		key = grow(key, int(kl))
		if _, err := io.ReadFull(cr, key); err != nil {
			return n, importErr(err)
		}
		vl, err := binary.ReadUvarint(cr)
		if err != nil {
			return n, importErr(err)
		}
		if vl > maxImportLen {
			return n, fmt.Errorf("%w: value length %d", ErrCorrupt, vl)
		}
		val = grow(val, int(vl))
		if _, err := io.ReadFull(cr, val); err != nil {
			return n, importErr(err)
		}
		t.Set(key, val)
		n++
	}
	count, err := binary.ReadUvarint(cr)
	if err != nil {
		return n, importErr(err)
	}
	want := cr.crc
	var sum [4]byte
	if _, err := io.ReadFull(br, sum[:]); err != nil {
		return n, importErr(err)
	}
	if got := binary.LittleEndian.Uint32(sum[:]); got != want {
		return n, fmt.Errorf("%w: checksum %08x, want %08x", ErrCorrupt, got, want)
	}
	if count != uint64(n) {
		return n, fmt.Errorf("%w: %d pairs, end marker says %d", ErrCorrupt, n, count)
	}
	return n, nil
}

func importErr(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: truncated", ErrCorrupt)
	}
	return fmt.Errorf("table: import: %w", err)
}

// grow returns b resized to n bytes, reusing its storage when large enough.
func grow(b []byte, n int) []byte {
	if cap(b) >= n {
		return b[:n]
	}
	return make([]byte, n)
}

type byteReader interface {
	io.Reader
	io.ByteReader
}

// crcReader checksums everything read through it.
type crcReader struct {
	r   byteReader
	crc uint32
}

func (c *crcReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.crc = crc32.Update(c.crc, castagnoli, p[:n])
	return n, err
}

func (c *crcReader) ReadByte() (byte, error) {
	b, err := c.r.ReadByte()
	if err == nil {
		c.crc = crc32.Update(c.crc, castagnoli, []byte{b})
	}
	return b, err
}
