package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Freeze stops process pid with SIGSTOP and waits until every one of its
// threads is stopped. kill(2) only queues the signal: on a busy machine a
// thread already running can still answer a request for a moment, so a test
// that expects a frozen server to time out must wait for the stop to land.
func Freeze(pid int) error {
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		return fmt.Errorf("SIGSTOP to pid %d: %w", pid, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		running, err := runningThreads(pid)
		if err != nil {
			return err
		}
		if running == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pid %d: %d thread(s) still running 5s after SIGSTOP", pid, running)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// Thaw resumes a process stopped by Freeze.
func Thaw(pid int) error {
	if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
		return fmt.Errorf("SIGCONT to pid %d: %w", pid, err)
	}
	return nil
}

// runningThreads counts the threads of pid not in a stopped state (T or t
// in /proc/<pid>/task/<tid>/stat).
func runningThreads(pid int) (int, error) {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", pid))
	if err != nil || len(tasks) == 0 {
		return 0, fmt.Errorf("pid %d: no threads in /proc (%v)", pid, err)
	}
	n := 0
	for _, f := range tasks {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // the thread exited
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 || i+2 >= len(s) {
			return 0, fmt.Errorf("%s: unexpected format", f)
		}
		if st := s[i+2]; st != 'T' && st != 't' {
			n++
		}
	}
	return n, nil
}
