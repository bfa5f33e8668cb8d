package check

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shoal-kv/shoal/internal/harness"
)

// The disk fault tests run real `shoal server` processes (a standalone group, no controller)
// and damage their data directories between runs, or fill the disk under a running one.

// startDiskGroup starts a standalone group of n processes and stops it when the test ends.
// mutate, when not nil, edits the description before the start.
func startDiskGroup(t *testing.T, n int, mutate func(*harness.Cluster)) (*harness.Cluster, uint64) {
	t.Helper()
	// Free ports are picked before the processes bind them, so another process on a busy
	// machine can take one in between: start again on new ports when a process dies at once.
	for attempt := 1; ; attempt++ {
		c, err := harness.NewGroup(harness.Options{Exe: shoalExe, Dir: t.TempDir(), Replicas: n,
			ExtraArgs: []string{"--tick", "50ms"}})
		if err != nil {
			t.Fatal(err)
		}
		if mutate != nil {
			mutate(c)
		}
		if err := c.StartAll(); err != nil {
			c.StopAll()
			t.Fatal(err)
		}
		if id, died := earlyExit(c, 1500*time.Millisecond); died && attempt < 3 {
			t.Logf("node %d exited at start (port taken?); starting again on new ports", id)
			c.StopAll()
			continue
		}
		t.Cleanup(func() {
			c.StopAll()
			if t.Failed() {
				for _, s := range c.Specs {
					if b, err := os.ReadFile(s.Log); err == nil {
						t.Logf("--- log of node %d (last 2000 bytes):\n%s", s.ID, b[max(0, len(b)-2000):])
					}
				}
			}
		})
		leader, err := c.WaitLeader(t.Context(), 30*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return c, leader
	}
}

// writeKeys sets n keys through addr and returns what was acknowledged.
func writeKeys(t *testing.T, addr, prefix string, n int) map[string]string {
	t.Helper()
	acked := make(map[string]string, n)
	for i := range n {
		k, v := fmt.Sprintf("%s:%d", prefix, i), fmt.Sprintf("value-%d", i)
		if _, err := call(t.Context(), addr, 10*time.Second, "SET", k, v); err != nil {
			t.Fatalf("set %s: %v", k, err)
		}
		acked[k] = v
	}
	return acked
}

// readAll checks, retrying until deadline, that every key reads its value through addr.
func readAll(t *testing.T, addr string, want map[string]string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for k, v := range want {
		for {
			got, err := call(t.Context(), addr, 5*time.Second, "GET", k)
			if err == nil && string(got.Str) == v {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("via %s: GET %s = %q, %v; want %q", addr, k, got.Str, err, v)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// newestSegment returns the path of the newest WAL segment in a node's data directory.
func newestSegment(t *testing.T, dir string) string {
	t.Helper()
	segs, err := filepath.Glob(filepath.Join(dir, "wal", "*.wal"))
	if err != nil || len(segs) == 0 {
		t.Fatalf("no WAL segment in %s: %v", dir, err)
	}
	slices.Sort(segs) // names are fixed-width hex sequence numbers
	return segs[len(segs)-1]
}

// recordOffsets parses a segment's records ([4 length][1 type][4 crc][payload]) and returns the
// offset and payload length of each.
func recordOffsets(t *testing.T, b []byte) (offs, lens []int) {
	t.Helper()
	for off := 0; off+9 <= len(b); {
		n := int(binary.LittleEndian.Uint32(b[off:]))
		if n == 0 && b[off+4] == 0 || off+9+n > len(b) {
			break
		}
		offs, lens = append(offs, off), append(lens, n)
		off += 9 + n
	}
	return offs, lens
}

func logContains(t *testing.T, path, want string) bool {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Contains(string(b), want)
}

// logLine returns the first line of the file at path containing want.
func logLine(t *testing.T, path, want string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if strings.Contains(line, want) {
			return line
		}
	}
	return ""
}

// walVictim is a follower killed after 300 acknowledged writes, with its newest WAL segment.
type walVictim struct {
	c      *harness.Cluster
	leader uint64
	acked  map[string]string
	victim uint64
	spec   harness.NodeSpec
	seg    string // path of the newest WAL segment
	wal    []byte // its contents
}

// killFollowerAfterWrites starts a 3-node group, writes 300 keys with prefix through its leader,
// kills one follower and reads the follower's newest WAL segment, for tests that damage it.
func killFollowerAfterWrites(t *testing.T, prefix string) walVictim {
	t.Helper()
	w := walVictim{}
	w.c, w.leader = startDiskGroup(t, 3, nil)
	w.acked = writeKeys(t, w.c.Addr(w.leader), prefix, 300)
	w.victim = w.c.Specs[0].ID
	if w.victim == w.leader {
		w.victim = w.c.Specs[1].ID
	}
	w.spec = w.c.Specs[w.victim-1]
	if err := w.c.Kill(w.victim); err != nil {
		t.Fatal(err)
	}
	w.seg = newestSegment(t, w.spec.Dir)
	var err error
	if w.wal, err = os.ReadFile(w.seg); err != nil {
		t.Fatal(err)
	}
	return w
}

// TestTornWALTailIsTruncated: a node killed mid-write leaves a partial last record; at restart
// the node truncates it, recovers, catches up from its peers and serves every acknowledged write.
func TestTornWALTailIsTruncated(t *testing.T) {
	w := killFollowerAfterWrites(t, "torn")
	c, leader, acked, victim, spec, seg, b := w.c, w.leader, w.acked, w.victim, w.spec, w.seg, w.wal
	st, err := os.Stat(seg)
	if err != nil {
		t.Fatal(err)
	}
	offs, lens := recordOffsets(t, b)
	if len(offs) < 2 {
		t.Fatalf("%s holds %d records; want several", seg, len(offs))
	}
	// A crash in the middle of a write leaves part of a record that was never fsynced, and so
	// never acknowledged: write the first half of a copy of the last record where the log ends,
	// over the zeros the WAL keeps written ahead. (Cutting into a record that was already
	// fsynced would lose an entry this node acknowledged, which no storage engine can hide from
	// raft: the leader would send it a commit index beyond its log.)
	end := int64(offs[len(offs)-1] + 9 + lens[len(lens)-1])
	i := len(offs) - 1
	for i > 0 && lens[i] < 32 { // an entry, not the HardState closing each write
		i--
	}
	torn := b[offs[i] : offs[i]+(9+lens[i])/2]
	f, err := os.OpenFile(seg, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(torn, end); err != nil {
		t.Fatal(err)
	}
	f.Close()
	t.Logf("wrote a torn record of %d bytes at %d in %s (%d bytes)", len(torn), end, seg, st.Size())
	if err := c.Start(victim); err != nil {
		t.Fatal(err)
	}
	readAll(t, spec.ClientAddr, acked, 30*time.Second)
	if l := logLine(t, spec.Log, "truncating torn tail"); l == "" {
		t.Errorf("node %d's log does not report the torn tail it truncated", victim)
	} else {
		t.Logf("node log: %s", l)
	}
	// It takes writes again, through itself.
	more := writeKeys(t, spec.ClientAddr, "after", 20)
	readAll(t, c.Addr(leader), more, 10*time.Second)
}

// TestCorruptWALRecordRefusesStart: a damaged record in the middle of the log is not a torn tail
// (valid records follow it, so it was once durable): the node must refuse to start, naming the
// file and offset, rather than silently lose acknowledged entries.
func TestCorruptWALRecordRefusesStart(t *testing.T) {
	w := killFollowerAfterWrites(t, "corrupt")
	c, leader, acked, victim, spec, seg, b := w.c, w.leader, w.acked, w.victim, w.spec, w.seg, w.wal
	offs, lens := recordOffsets(t, b)
	i := len(offs) / 2
	for i < len(offs) && lens[i] == 0 {
		i++
	}
	if len(offs) < 10 || i >= len(offs)-1 {
		t.Fatalf("%s holds %d records; want many", seg, len(offs))
	}
	pos := offs[i] + 9 + lens[i]/2
	b[pos] ^= 0x40
	if err := os.WriteFile(seg, b, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("flipped a bit at byte %d of %s (record %d of %d, at offset %d)", pos, seg, i, len(offs), offs[i])
	if err := c.Start(victim); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.Exited(victim):
	case <-time.After(30 * time.Second):
		t.Fatalf("node %d started on a corrupt WAL", victim)
	}
	code, _ := c.ExitCode(victim)
	if code == 0 {
		t.Errorf("node %d exited with status 0 on a corrupt WAL", victim)
	}
	want := fmt.Sprintf("corrupt record in %s at offset %d", seg, offs[i])
	if l := logLine(t, spec.Log, want); l == "" {
		t.Errorf("node %d's log lacks %q", victim, want)
	} else {
		t.Logf("exit status %d; node log: %s", code, l)
	}
	// The other two keep the group serving everything.
	readAll(t, c.Addr(leader), acked, 10*time.Second)
}

// TestDiskFullFailsWritesAndRecovers fills the filesystem under a single-node group's data
// directory (a small tmpfs, so root is needed to mount it): writes must fail with an error
// rather than be acknowledged, the log must say the disk is full, and once space returns the
// node, restarted, serves every write acknowledged before and takes new ones.
func TestDiskFullFailsWritesAndRecovers(t *testing.T) {
	mnt := filepath.Join(t.TempDir(), "small-disk")
	if err := os.MkdirAll(mnt, 0o750); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs")
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs (%v: %s); the disk-full test needs one", err, strings.TrimSpace(string(out)))
	}
	// Registered first, so it runs last: after the node is stopped.
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", mnt, err, out)
		}
	})
	// Only the data directory goes on the small disk; the log stays where it can be written.
	c, _ := startDiskGroup(t, 1, func(c *harness.Cluster) {
		s := &c.Specs[0]
		s.Dir = filepath.Join(mnt, "node1")
		s.Argv[slices.Index(s.Argv, "--dir")+1] = s.Dir
		_ = os.RemoveAll(s.Dir) // a previous attempt's
	})
	spec := &c.Specs[0]
	id := spec.ID
	addr := spec.ClientAddr
	acked := writeKeys(t, addr, "full", 100)

	filler := filepath.Join(mnt, "filler")
	fillDisk(t, filler)
	var werr error
	// The WAL keeps 1 MiB written ahead of its end, so a full disk shows after at most that.
	for i := range 400 {
		if _, werr = call(t.Context(), addr, 8*time.Second, "SET", fmt.Sprintf("nospace:%d", i), strings.Repeat("x", 4096)); werr != nil {
			break
		}
		acked[fmt.Sprintf("nospace:%d", i)] = strings.Repeat("x", 4096) // fit in what was left
	}
	if werr == nil {
		t.Fatal("writes kept succeeding on a full disk")
	}
	t.Logf("write on a full disk: %v", werr)
	deadline := time.Now().Add(10 * time.Second)
	for !logContains(t, spec.Log, "disk full") {
		if time.Now().After(deadline) {
			t.Fatal("the node's log does not say the disk is full")
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("node log: %s", logLine(t, spec.Log, "disk full"))

	// Space returns.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if err := c.Stop(id); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(id); err != nil {
		t.Fatal(err)
	}
	if _, err := c.WaitLeader(t.Context(), 30*time.Second); err != nil {
		t.Fatal(err)
	}
	readAll(t, addr, acked, 30*time.Second)
	more := writeKeys(t, addr, "after", 20)
	readAll(t, addr, more, 10*time.Second)
}

// fillDisk writes a file until the filesystem is full.
func fillDisk(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("fill %s: %v", path, err)
			}
			break
		}
	}
	// Small writes use up the last partial block, so that the next WAL append fails.
	for {
		if _, err := f.Write(buf[:512]); err != nil {
			break
		}
	}
}
