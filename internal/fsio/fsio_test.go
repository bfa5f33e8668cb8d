package fsio

import (
	"errors"
	"os"
	"strings"
	"syscall"
	"testing"
)

func TestErrorCallsOutFullDisk(t *testing.T) {
	err := Error("wal", "write", &os.PathError{Op: "write", Path: "x", Err: syscall.ENOSPC})
	if !strings.Contains(err.Error(), "wal: write: disk full") || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Error = %v", err)
	}
	if err := Error("snap", "read", errors.New("boom")); err.Error() != "snap: read: boom" {
		t.Fatalf("Error = %v", err)
	}
}

func TestSyncDir(t *testing.T) {
	if err := SyncDir(t.TempDir()); err != nil {
		t.Fatal(err)
	}
	if err := SyncDir("/nonexistent/dir"); err == nil {
		t.Fatal("SyncDir of a missing directory succeeded")
	}
}
