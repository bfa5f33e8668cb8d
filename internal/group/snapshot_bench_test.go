package group

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/shoal-kv/shoal/internal/snap"
	"github.com/shoal-kv/shoal/internal/table"
)

// benchPairs is SHOAL_BENCH_PAIRS, default 1M.
func benchPairs() int {
	n := 1_000_000
	if s := os.Getenv("SHOAL_BENCH_PAIRS"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	return n
}

func benchKey(i int) []byte { return fmt.Appendf(nil, "key:%012d", i) }

// filledGroup returns a standalone group holding n pairs of 32-byte values.
func filledGroup(n int) *Group {
	g := New(Config{GroupID: 1, Table: table.New()})
	val := make([]byte, 32)
	for i := range n {
		g.Table().Set(benchKey(i), val)
	}
	return g
}

// BenchmarkSnapshot measures serialising the whole state machine into memory (Snapshot).
// SHOAL_BENCH_PAIRS sets the pair count (default 1M).
func BenchmarkSnapshot(b *testing.B) {
	n := benchPairs()
	g := filledGroup(n)
	b.ResetTimer()
	var size int
	for b.Loop() {
		data, err := g.Snapshot()
		if err != nil {
			b.Fatal(err)
		}
		size = len(data)
	}
	b.ReportMetric(float64(size)/float64(n), "bytes/pair")
	b.ReportMetric(float64(n), "pairs")
}

// BenchmarkSnapshotHoldUp measures how long a snapshot of SHOAL_BENCH_PAIRS pairs (default 1M)
// holds up writes. One goroutine stands in for the raft loop and applies SET commands to random
// existing keys, which a client goroutine issues every 100µs; once warmed up, the loop takes a
// snapshot to a file:
//
//   - none: no snapshot, 100 ms of writes: the harness's own noise floor;
//   - inline: as the raft loop did before, Snapshot then snap.Save, in the loop;
//   - streamed: as it does now, StartSnapshot in the loop, snap.SaveStream on a goroutine while
//     the loop goes on applying, Close in the loop when the file is durable.
//
// Reported: hold-max-ms and hold-p99-ms, the latency from the time a write was due to be issued
// to the time it was applied, over the writes due while the snapshot ran (the client's own
// lateness counts, so a starved client does not hide a stall); snap-s, from capture to durable
// file; apply-max-ms (streamed), the longest single Apply while the snapshot ran, copy-on-write
// and waits for slots the exporter claimed included, free of the client's and the scheduler's
// lateness; copy-MB, the memory the snapshot holds beyond the table: the whole serialised state
// inline, the peak of the values saved by copy-on-write streamed (plus, not counted, the
// exporter's buffer of about chunkBytes and the file's 1 MiB write buffer).
func BenchmarkSnapshotHoldUp(b *testing.B) {
	n := benchPairs()
	g := filledGroup(n)
	for _, mode := range []string{"none", "inline", "streamed"} {
		b.Run(mode, func(b *testing.B) {
			for b.Loop() {
				holdUp(b, g, n, mode)
			}
		})
	}
}

type benchWrite struct {
	data []byte
	due  time.Time
}

func holdUp(b *testing.B, g *Group, n int, mode string) {
	ss, err := snap.New(b.TempDir(), nil)
	if err != nil {
		b.Fatal(err)
	}
	const interval = 100 * time.Microsecond
	writes := make(chan benchWrite, 1<<16)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	defer wg.Wait()
	defer close(stop)
	wg.Go(func() {
		rng := rand.New(rand.NewPCG(1, 2))
		val := make([]byte, 32)
		due := time.Now()
		for {
			c := command{op: opSet, args: [][]byte{benchKey(rng.IntN(n)), val}}
			select {
			case writes <- benchWrite{data: c.encode(nil), due: due}:
			case <-stop:
				return
			}
			due = due.Add(interval)
			if d := time.Until(due); d > 0 {
				time.Sleep(d)
			}
		}
	})

	const warm, after = 2000, 500
	var (
		index      uint64
		start, end time.Time
		copied     int64
		lat        []time.Duration
		applyMax   time.Duration
		job        *snapJob
		done       chan error
	)
	for w := range writes {
		index++
		before := time.Now()
		g.Apply(index, w.data)
		now := time.Now()
		if !start.IsZero() && end.IsZero() {
			applyMax = max(applyMax, now.Sub(before))
		}
		if !start.IsZero() && !w.due.Before(start) && (end.IsZero() || w.due.Before(end)) {
			lat = append(lat, now.Sub(w.due))
		}
		if index == warm {
			start = time.Now()
			md := raftpb.SnapshotMetadata{Index: index, Term: 1}
			switch mode {
			case "none":
				end = start.Add(100 * time.Millisecond)
				continue
			case "inline":
				data, err := g.Snapshot()
				if err != nil {
					b.Fatal(err)
				}
				copied = int64(len(data))
				if err := ss.Save(raftpb.Snapshot{Metadata: md, Data: data}); err != nil {
					b.Fatal(err)
				}
				end = time.Now()
				continue
			}
			j, err := g.StartSnapshot()
			if err != nil {
				b.Fatal(err)
			}
			job, done = j.(*snapJob), make(chan error, 1)
			go func() {
				_, err := ss.SaveStream(md, func(w io.Writer) error { return j.Stream(context.Background(), w) })
				done <- err
			}()
			continue
		}
		if done != nil {
			select {
			case err := <-done:
				if err != nil {
					b.Fatal(err)
				}
				job.Close()
				end, done = time.Now(), nil
				copied = job.peakCopied
			default:
			}
		}
		// A few more writes after the end, so that every write due during the snapshot applied.
		if !end.IsZero() && now.Sub(end) > after*interval {
			break
		}
	}
	slices.Sort(lat)
	if len(lat) == 0 {
		b.Fatal("no write was due during the snapshot")
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(lat[len(lat)-1]), "hold-max-ms")
	b.ReportMetric(ms(lat[len(lat)*99/100]), "hold-p99-ms")
	b.ReportMetric(end.Sub(start).Seconds(), "snap-s")
	b.ReportMetric(float64(copied)/(1<<20), "copy-MB")
	b.ReportMetric(float64(len(lat)), "writes")
	if mode == "streamed" {
		b.ReportMetric(ms(applyMax), "apply-max-ms")
	}
}

// BenchmarkRestore measures restoring SHOAL_BENCH_PAIRS pairs (default 1M) from a snapshot in
// memory (Restore, as for a snapshot the leader sent) and from its file (RestoreFrom on a file
// opened with snap.OpenIndex, as at restart).
func BenchmarkRestore(b *testing.B) {
	n := benchPairs()
	data, err := filledGroup(n).Snapshot()
	if err != nil {
		b.Fatal(err)
	}
	b.Run("memory", func(b *testing.B) {
		g := New(Config{GroupID: 1, Table: table.New()})
		for b.Loop() {
			if err := g.Restore(data); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/pair")
	})
	b.Run("file", func(b *testing.B) {
		s, err := snap.New(b.TempDir(), nil)
		if err != nil {
			b.Fatal(err)
		}
		md := raftpb.SnapshotMetadata{Index: 1, Term: 1}
		if err := s.Save(raftpb.Snapshot{Metadata: md, Data: data}); err != nil {
			b.Fatal(err)
		}
		g := New(Config{GroupID: 1, Table: table.New()})
		for b.Loop() {
			f, err := s.OpenIndex(1)
			if err != nil {
				b.Fatal(err)
			}
			err = g.RestoreFrom(f.Data, f.Data.Size())
			f.Close()
			if err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/pair")
	})
}
