//go:build linux

package local

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// watchStore reports changes in the key store's directory: `kseal kms`
// writes a temporary file and renames it over the store, so a rename into
// the directory (or a file written there) is the cue to re-read it. Events
// are coalesced (the channel holds one); the reader compares the store's
// stat with what it loaded, so unrelated files cost a stat. stop ends the
// watch.
func watchStore(path string) (events <-chan struct{}, stop func(), err error) {
	fd, err := syscall.InotifyInit1(syscall.IN_CLOEXEC | syscall.IN_NONBLOCK)
	if err != nil {
		return nil, nil, fmt.Errorf("inotify: %w", err)
	}
	const mask = syscall.IN_MOVED_TO | syscall.IN_CLOSE_WRITE | syscall.IN_CREATE | syscall.IN_ATTRIB
	if _, err := syscall.InotifyAddWatch(fd, filepath.Dir(path), mask); err != nil {
		syscall.Close(fd)
		return nil, nil, fmt.Errorf("inotify watch %s: %w", filepath.Dir(path), err)
	}
	// A non-blocking descriptor makes the File use the runtime's poller, so
	// Close wakes the blocked Read below.
	f := os.NewFile(uintptr(fd), "inotify")
	ch := make(chan struct{}, 1)
	go func() {
		buf := make([]byte, 4096)
		for {
			if _, err := f.Read(buf); err != nil {
				return
			}
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}()
	return ch, func() { f.Close() }, nil
}
