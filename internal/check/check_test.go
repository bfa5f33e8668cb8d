package check

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCheckShort runs the checker against real processes with every fault kind for 40 seconds
// and requires a linearizable history with no acknowledged write lost. It is what CI runs of
// `shoal check`; the soak is `go run ./cmd/shoal check --duration 30m` (docs/RELIABILITY.md).
func TestCheckShort(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a 9-process cluster for about a minute")
	}
	dir := t.TempDir()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	res, err := Run(t.Context(), Config{
		Duration: 40 * time.Second, Seed: seed, Exe: shoalExe, Dir: dir,
		VizPath: filepath.Join(dir, "history.html"),
		Logger:  slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo})),
	})
	if err != nil {
		dumpLogs(t, dir)
		t.Fatalf("run (seed %d): %v", seed, err)
	}
	t.Log(res.Summary())
	for _, d := range res.LostDetail {
		t.Error(d)
	}
	if !res.Linearizable() {
		dumpLogs(t, dir)
		t.Fatalf("not linearizable (seed %d): visualisation %s", seed, res.VizPath)
	}
	if res.Lost != 0 {
		t.Fatalf("%d acknowledged writes lost (seed %d)", res.Lost, seed)
	}
	// The run must have exercised the system: operations completed and every fault kind fired.
	if res.OK < 200 {
		t.Errorf("only %d operations completed", res.OK)
	}
	f := res.Faults
	if f.Kill == 0 || f.Pause == 0 || f.Partition == 0 || f.Disk == 0 || f.Move == 0 {
		t.Errorf("not every fault kind was injected: %+v", f)
	}
}

// testWriter sends log output to t.Log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// dumpLogs prints the tail of every process log in dir.
func dumpLogs(t *testing.T, dir string) {
	t.Helper()
	logs, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	for _, l := range logs {
		b, err := os.ReadFile(l)
		if err != nil {
			continue
		}
		if len(b) > 3000 {
			b = b[len(b)-3000:]
		}
		t.Logf("--- %s (last 3000 bytes):\n%s", filepath.Base(l), b)
	}
}
