package main

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"time"
)

// diskFault is the slow disk of `shoal check --faults disk`: a server run with --fault-injection
// adds the duration written in its data directory's check.DiskFaultFile to every fsync of its
// WAL (nothing while the file is absent). The file is read every 50 ms, off the write path.
type diskFault struct {
	path  string
	log   *slog.Logger
	delay atomic.Int64 // nanoseconds
	stop  context.CancelFunc
	done  chan struct{}
}

// watchDiskFault starts watching path; close stops it.
func watchDiskFault(ctx context.Context, path string, log *slog.Logger) *diskFault {
	ctx, cancel := context.WithCancel(ctx)
	f := &diskFault{path: path, log: log, stop: cancel, done: make(chan struct{})}
	go func() {
		defer close(f.done)
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			f.poll()
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return f
}

// poll reads the file and sets the delay from it.
func (f *diskFault) poll() {
	var d time.Duration
	if b, err := os.ReadFile(f.path); err == nil {
		if d, err = time.ParseDuration(strings.TrimSpace(string(b))); err != nil {
			f.log.Warn("fault injection: unreadable fsync delay", "file", f.path, "err", err)
			d = 0
		}
	}
	if old := time.Duration(f.delay.Swap(int64(d))); old != d {
		f.log.Info("fault injection: WAL fsync delay", "delay", d)
	}
}

// beforeSync is the WAL's hook: it waits out the current delay, in steps, so that a stall ends
// soon after the fault is cleared rather than a whole delay later.
func (f *diskFault) beforeSync() {
	const step = 10 * time.Millisecond
	for left := time.Duration(f.delay.Load()); left > 0 && f.delay.Load() > 0; left -= step {
		time.Sleep(min(step, left))
	}
}

// close stops the watch.
func (f *diskFault) close() {
	f.stop()
	<-f.done
}
