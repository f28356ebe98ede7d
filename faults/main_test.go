//go:build faults

// Package faults breaks the servers and the worker process while events flow, and checks with
// a ledger that nothing was lost: every event the broker confirmed reaches every webhook, or
// its delivery is recorded as failed.
//
// These tests stop RabbitMQ and MariaDB, flip the database read-only and kill connections, so
// they run on their own, one at a time, after the other tests:
//
//	go test -race -tags faults -p 1 -count=1 -timeout 15m ./faults/
//
// Every test puts the servers back as it found them when it ends, whatever happened.
package faults

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// bin is the webhookd binary built once for the tests that run the worker as a process.
var bin string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "webhookd-faults-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "faults: %v\n", err)
		return 1
	}
	defer os.RemoveAll(dir)
	bin = filepath.Join(dir, "webhookd")
	if err := build(bin); err != nil {
		fmt.Fprintf(os.Stderr, "faults: build webhookd: %v\n", err)
		return 1
	}
	// An earlier run killed halfway may have left a server stopped or read-only.
	if err := restoreServers(); err != nil {
		fmt.Fprintf(os.Stderr, "faults: servers not usable: %v\n", err)
		return 1
	}
	if err := noteBaseline(); err != nil {
		fmt.Fprintf(os.Stderr, "faults: %v\n", err)
		return 1
	}
	start := time.Now()
	code := m.Run()
	fmt.Printf("faults: suite took %v\n", time.Since(start).Round(100*time.Millisecond))
	return code
}

// build compiles the worker from the repository root, with the race detector when the tests
// have it, so that a race the faults provoke in the process is reported too.
func build(out string) error {
	// The toolchain that built the tests, else whatever go is on the PATH.
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goBin); err != nil {
		if goBin, err = exec.LookPath("go"); err != nil {
			return err
		}
	}
	args := []string{"build", "-o", out}
	if raceEnabled {
		args = append(args, "-race")
	}
	cmd := exec.Command(goBin, append(args, "..")...)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%v\n%s", err, b)
	}
	return nil
}
