package bench

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// Proc is one child process started by a Procs.
type Proc struct {
	Name string
	Log  string
	cmd  *exec.Cmd
	done chan struct{}
}

// PID returns the process id.
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Procs owns the peer processes of a run and stops exactly those, by pid. Its zero value is
// ready to use; it is safe for concurrent use.
type Procs struct {
	mu    sync.Mutex
	procs []*Proc
	log   *slog.Logger
	// Env is added to the environment of every process started (Config.ServerEnv).
	Env []string
}

// NewProcs returns an empty set that logs to log.
func NewProcs(log *slog.Logger) *Procs { return &Procs{log: log} }

// Start starts argv with its output in logPath. The child gets its own process group so that a
// Ctrl-C at the terminal reaches only the benchmark, which then stops its children in order
// instead of them dying mid-measurement.
func (ps *Procs) Start(name, dir, logPath string, argv ...string) (*Proc, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o640)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	defer logf.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	if len(ps.Env) > 0 {
		cmd.Env = append(os.Environ(), ps.Env...)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Proc{Name: name, Log: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	ps.mu.Lock()
	ps.procs = append(ps.procs, p)
	ps.mu.Unlock()
	if ps.log != nil {
		ps.log.Debug("started", "name", name, "pid", p.PID())
	}
	return p, nil
}

// Running reports whether p has not exited.
func (p *Proc) Running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// StopAll sends SIGTERM to every process it started, by pid, waits up to 10 s for each, then
// SIGKILLs what is left. It is idempotent.
func (ps *Procs) StopAll() {
	ps.mu.Lock()
	procs := ps.procs
	ps.procs = nil
	ps.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Go(func() {
			if !p.Running() {
				return
			}
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.done:
			case <-time.After(10 * time.Second):
				_ = p.cmd.Process.Kill()
				<-p.done
			}
			if ps.log != nil {
				ps.log.Debug("stopped", "name", p.Name, "pid", p.PID())
			}
		})
	}
	wg.Wait()
}

// waitFor polls ready every 100 ms until it returns nil, the timeout passes or ctx ends.
func waitFor(ctx context.Context, timeout time.Duration, what string, ready func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := ready()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %v: %w", what, timeout, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}
