package main

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestDiskFaultFollowsTheFile: the delay is the file's while it exists, none once it is gone, and
// a stalled sync ends soon after the file goes rather than a whole delay later.
func TestDiskFaultFollowsTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fault-fsync-delay")
	f := watchDiskFault(context.Background(), path, slog.New(slog.DiscardHandler))
	defer f.close()
	waitDelay := func(want time.Duration) {
		t.Helper()
		for end := time.Now().Add(5 * time.Second); time.Duration(f.delay.Load()) != want; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(end) {
				t.Fatalf("delay %v, want %v", time.Duration(f.delay.Load()), want)
			}
		}
	}
	if err := os.WriteFile(path, []byte("1h\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	waitDelay(time.Hour)
	done := make(chan struct{})
	go func() { defer close(done); f.beforeSync() }()
	time.Sleep(100 * time.Millisecond)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("a stalled sync did not end after the fault file was removed")
	}
	waitDelay(0)
}
