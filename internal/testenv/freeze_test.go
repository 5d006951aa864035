package testenv

import (
	"os/exec"
	"testing"
)

func TestFreezeStopsEveryThread(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Skip("no sleep binary:", err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	pid := cmd.Process.Pid
	if err := Freeze(pid); err != nil {
		t.Fatal(err)
	}
	if n, err := runningThreads(pid); err != nil || n != 0 {
		t.Fatalf("after Freeze: %d running threads, %v", n, err)
	}
	if err := Thaw(pid); err != nil {
		t.Fatal(err)
	}
	if n, err := runningThreads(pid); err != nil || n == 0 {
		t.Fatalf("after Thaw: %d running threads, %v; want the sleeping thread counted", n, err)
	}
}
