// Package fsio holds the few file-system helpers the durable stores (wal, snap) share.
package fsio

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// SyncDir fsyncs a directory so that entries created, renamed or removed in it are durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open dir: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync dir %s: %w", dir, err)
	}
	return nil
}

// Error wraps err from operation op of package pkg, calling out a full disk so that operators
// see the cause at a glance.
func Error(pkg, op string, err error) error {
	if errors.Is(err, syscall.ENOSPC) {
		return fmt.Errorf("%s: %s: disk full: %w", pkg, op, err)
	}
	return fmt.Errorf("%s: %s: %w", pkg, op, err)
}
