package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
)

// Machine describes the host a run was measured on, for the report.
type Machine struct {
	CPUModel string
	NumCPU   int // online CPUs (nproc)
	MemTotal string
	Kernel   string
	GoVer    string
	Versions map[string]string // peer name -> version line
}

// DescribeMachine reads /proc/cpuinfo, /proc/meminfo and nproc; missing pieces stay empty
// rather than failing the run, since the numbers matter more than their caption.
func DescribeMachine(ctx context.Context) Machine {
	m := Machine{NumCPU: runtime.NumCPU(), GoVer: runtime.Version(), Versions: map[string]string{}}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		m.CPUModel = cpuModel(b)
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				m.MemTotal = strings.TrimSpace(v)
			}
		}
	}
	if out, err := exec.CommandContext(ctx, "nproc").Output(); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(out))); err == nil {
			m.NumCPU = n
		}
	}
	if out, err := exec.CommandContext(ctx, "uname", "-sr").Output(); err == nil {
		m.Kernel = strings.TrimSpace(string(out))
	}
	for name, argv := range map[string][]string{
		"redis-server": {"redis-server", "--version"},
		"etcd":         {"etcd", "--version"},
	} {
		if out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).Output(); err == nil {
			first, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
			m.Versions[name] = first
		}
	}
	return m
}

// cpuModel returns the first "model name" of a /proc/cpuinfo text.
func cpuModel(cpuinfo []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(cpuinfo))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// ReadRSS returns a process's resident set size in bytes, from VmRSS in /proc/<pid>/status.
func ReadRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("rss of pid %d: %w", pid, err)
	}
	return parseVmRSS(b)
}

// parseVmRSS extracts VmRSS ("VmRSS:	  123456 kB") from a /proc/<pid>/status text.
func parseVmRSS(status []byte) (int64, error) {
	for line := range strings.SplitSeq(string(status), "\n") {
		v, ok := strings.CutPrefix(line, "VmRSS:")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) < 1 {
			break
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("VmRSS %q: %w", v, err)
		}
		return kb * 1024, nil
	}
	return 0, fmt.Errorf("no VmRSS line")
}
