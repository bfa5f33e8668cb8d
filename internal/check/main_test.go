package check

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// shoalExe is the binary the tests run as real processes, built once by TestMain.
var shoalExe string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "shoal-check-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	shoalExe = filepath.Join(dir, "shoal")
	out, err := exec.Command("go", "build", "-o", shoalExe, "github.com/shoal-kv/shoal/cmd/shoal").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build shoal: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
